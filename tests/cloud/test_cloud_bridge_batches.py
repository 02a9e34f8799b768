"""A connection's batches applied beside its reader (bridge/batches.py): in the order read,
one at a time, the reader held back past WAITING_MAX waiting, and nothing more applied
after a failure."""

from __future__ import annotations

import asyncio
from typing import Any

from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import RelayConnection, SnapshotReceived
from bellhop_bridge.frames import NONCE_BYTES
from bellhop_cloud.bridge.batches import WAITING_MAX, Batches
from bellhop_cloud.bridge.endpoint import BridgeEndpoint
from bellhop_cloud.bridge.session import Link
from bellhop_cloud.relay import Relay
from websockets.exceptions import ConnectionClosedError

from tests.support.waiting import until


async def _marker() -> None:
    """Nothing: a task that is over once the tasks started before it have had a turn."""


def snapshot(n: int) -> Any:
    return SnapshotReceived(bridge_pb2.Snapshot(request_id=str(n)))


async def test_batches_are_applied_in_order_one_at_a_time_and_hold_the_reader_back() -> None:
    applied: list[str] = []
    running = 0
    gate = asyncio.Event()

    async def apply(event: Any) -> None:
        nonlocal running
        running += 1
        assert running == 1, "two at once"
        await gate.wait()
        applied.append(event.snapshot.request_id)
        running -= 1

    batches = Batches(apply, lambda exc: None)
    for n in range(WAITING_MAX + 1):  # the first is being applied, WAITING_MAX wait
        await batches.put(snapshot(n))
    await until(lambda: running == 1, 5, "the first batch being applied")
    held = asyncio.create_task(batches.put(snapshot(WAITING_MAX + 1)))
    await asyncio.create_task(_marker())  # started after the put: runs once it had its turn
    assert not held.done(), "the reader went on past WAITING_MAX waiting"
    gate.set()
    await held
    await until(lambda: len(applied) == WAITING_MAX + 2, 5, "every batch applied")
    assert applied == [str(n) for n in range(WAITING_MAX + 2)]
    await batches.close()


async def test_after_a_failure_nothing_more_is_applied_and_the_reader_goes_on() -> None:
    applied: list[str] = []
    failures: list[Exception] = []
    gate = asyncio.Event()

    async def apply(event: Any) -> None:
        await gate.wait()
        if event.snapshot.request_id == "0":
            raise RuntimeError("refused")
        applied.append(event.snapshot.request_id)

    batches = Batches(apply, failures.append)
    for n in range(WAITING_MAX + 1):
        await batches.put(snapshot(n))
    held = asyncio.create_task(batches.put(snapshot(WAITING_MAX + 1)))
    gate.set()
    await held  # the failure empties what waited, so a reader held back goes on
    await until(lambda: len(failures) == 1, 5, "the failure reported")
    await batches.put(snapshot(99))  # closed: taken and dropped
    await batches.close()
    assert applied == []
    assert str(failures[0]) == "refused"


class _GoneSocket:
    """The socket of a gateway that left while its batch was applied: sends fail as
    websockets' do once the peer has closed."""

    async def send(self, data: Any) -> None:
        raise ConnectionClosedError(None, None)

    async def close(self) -> None:
        return None


async def test_a_gateway_gone_when_its_acknowledgements_are_sent_is_no_relay_fault(
    relay: Relay,
) -> None:
    endpoint = BridgeEndpoint(relay)
    conn = RelayConnection(
        now=0.0, nonce=bytes(NONCE_BYTES), window_events=100, window_bytes=1 << 20
    )
    conn.request_snapshot("something to send", 0.0)
    link = Link(_GoneSocket(), conn)  # type: ignore[arg-type]

    async def committed(_link: Link, _event: Any) -> None:
        return None  # the batch's commit: what follows it is what is tested

    endpoint.applier.apply = committed  # type: ignore[method-assign,assignment]
    await endpoint._applied(link, snapshot(1))  # raises nothing: the link is just lost
    assert conn.closed
    assert endpoint.closes.get("unexpected_error", 0) == 0
