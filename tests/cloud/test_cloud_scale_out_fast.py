"""Two relay nodes on one PostgreSQL and one Redis: the short cuts of the two-node path
(a nudge that carries the items it announces) keep the database the truth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_cloud import remote
from bellhop_cloud.bridge import sent_marks
from bellhop_cloud.bridge.downlink import CARRY_MAX, NUDGES, Item, ItemKind, now_ms
from bellhop_cloud.bridge.items import carried, carry
from bellhop_cloud.config import BusBackend, RelayConfig
from bellhop_cloud.db.schema import audit_log, downlink
from bellhop_cloud.db.store import relaxed
from bellhop_cloud.errors import CommandIdReused, GatewayOffline
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.relay import Relay

from tests.cloud.bridging import cloud_hotel, until
from tests.cloud.test_cloud_scale_out import node, rest
from tests.support.redis import REDIS_URL, require_redis


@pytest.fixture
async def shared(relay_config: RelayConfig) -> RelayConfig:
    await require_redis()
    # Only the bus crosses Redis here: sign-up throttling stays per node, so that the
    # accounts these tests make do not count against other tests' on the shared Redis.
    return relay_config.model_copy(update={"bus_backend": BusBackend.REDIS, "redis_url": REDIS_URL})


def command(hotel_id: str, command_id: str, *, ttl_ms: int = 60_000, note: str = "") -> Item:
    body = {"name": "ping", "params": {"note": note}, "by": "cloud:x", "timeout_ms": 1000}
    now = now_ms()
    return Item(hotel_id, command_id, ItemKind.COMMAND, "dev-1", body, "usr_1", now, now + ttl_ms)


def test_carried_items_come_back_whole_or_not_at_all() -> None:
    items = [command("htl_1", "a", note="é"), command("htl_1", "b")]
    assert carried("htl_1", carry(items)) == items
    for broken in ("", "{", "[1]", '{"a": 1}', '[["a","nope",null,{},"u",1,2]]', "5"):
        assert carried("htl_1", broken) == []
    one_bad = json.loads(carry(items))
    one_bad[1][5] = "not a time"
    assert carried("htl_1", json.dumps(one_bad)) == []


@pytest.mark.redis
@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_nudge_with_items_and_one_without_both_deliver(
    shared: RelayConfig, test_name: str
) -> None:
    async with (
        node(shared, "node-a") as node_a,
        node(shared, "node-b") as node_b,
        rest(node_b, test_name) as api_b,
    ):
        hotel_id = (await cloud_hotel(api_b)).hotel_id
        sent: list[str] = []

        async def sender(hotel: str, frames: Sequence[bridge_pb2.Frame]) -> bool:
            assert hotel == hotel_id
            sent.extend(f.command.command.command_id for f in frames)
            return True

        node_a.downlink.attach(sender, lambda: {hotel_id})
        reads = counting_reads(node_a)

        async def queued_on_b(*items: Item) -> None:
            async with node_b.store.write() as conn:
                for item in items:
                    await node_b.downlink.queue(conn, item)

        # Carried: node A sends it without reading the queue, and marks it sent.
        carried_one = command(hotel_id, "carried")
        await queued_on_b(carried_one)
        await node_b.downlink.nudge(hotel_id, [carried_one])
        await until(lambda: sent == ["carried"])
        assert reads() == 0
        await until_state(node_a, hotel_id, "carried", "sent")

        # Too big to carry: the nudge names the hotel, node A reads what is queued.
        big = command(hotel_id, "big", note="x" * CARRY_MAX)
        await queued_on_b(big)
        await node_b.downlink.nudge(hotel_id, [big])
        await until(lambda: sent[1:] == ["big"])
        assert reads() == 1

        # A nudge whose copy does not parse is only a nudge: the queue is read.
        plain = command(hotel_id, "plain")
        await queued_on_b(plain)
        await node_b.bus.publish(NUDGES, f"{hotel_id} not-json")
        await until(lambda: sent[2:] == ["plain"])
        assert reads() == 2

        # An item carried past its expiry is not sent (nor would the queue's read send it).
        late = command(hotel_id, "late", ttl_ms=-1)
        await node_b.bus.publish(NUDGES, f"{hotel_id} {carry([late])}")
        await node_b.downlink.nudge(hotel_id, [command(hotel_id, "after", ttl_ms=60_000)])
        await until(lambda: "after" in sent)
        assert "late" not in sent


def counting_reads(relay: Relay) -> Any:
    """How many times `relay`'s downlink read the queue to send it from now on (its
    sweep's look for hotels with queued items is not counted: it runs on its own clock)."""
    count = 0
    read = relay.store.read

    @contextlib.asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        nonlocal count
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != "_deliver":
            frame = frame.f_back  # type: ignore[assignment]
        count += frame is not None
        async with read() as conn:
            yield conn

    relay.store.read = counted  # type: ignore[method-assign]
    return lambda: count


async def until_state(relay: Relay, hotel_id: str, item_id: str, state: str) -> None:
    async def current() -> str | None:
        async with relay.store.engine.connect() as conn:
            found: str | None = (
                await conn.execute(
                    downlink.select()
                    .with_only_columns(downlink.c.state)
                    .where(downlink.c.hotel_id == hotel_id, downlink.c.item_id == item_id)
                )
            ).scalar()
        return found

    for _ in range(100):
        if await current() == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{item_id} is {await current()}, not {state}")


@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_relaxed_run_commits_without_waiting_for_the_disk_and_others_still_wait(
    relay: Relay,
) -> None:
    def setting(conn: Any) -> str:
        relaxed(conn)
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar())

    assert await relay.store.run_relaxed(setting) == "off"
    assert await relay.store.run(setting) == "off"  # `relaxed` within `run`, as before

    def durable(conn: Any) -> str:
        return str(conn.exec_driver_sql("SHOW synchronous_commit").scalar())

    assert await relay.store.run(durable) == "on"


@pytest.mark.redis
@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_items_sent_on_a_nudge_are_marked_sent_late_and_only_while_unanswered(
    shared: RelayConfig, test_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The marks are written when the test says (flush), not when a loaded machine lets
    # the quick command's answer come after the timer.
    monkeypatch.setattr(sent_marks, "AFTER_S", 60.0)
    async with (
        node(shared, "node-a") as node_a,
        node(shared, "node-b") as node_b,
        rest(node_b, test_name) as api_b,
    ):
        hotel_id = (await cloud_hotel(api_b)).hotel_id
        sent: list[str] = []

        async def sender(hotel: str, frames: Sequence[bridge_pb2.Frame]) -> bool:
            sent.extend(f.command.command.command_id for f in frames)
            return True

        node_a.downlink.attach(sender, lambda: {hotel_id})
        quick, slow = command(hotel_id, "quick"), command(hotel_id, "slow")
        async with node_b.store.write() as conn:
            for item in (quick, slow):
                await node_b.downlink.queue(conn, item)
        await node_b.downlink.nudge(hotel_id, [quick, slow])
        await until(lambda: sorted(sent) == ["quick", "slow"])
        # Their rows may still say queued: a look at the queue (a nudge without items,
        # the sweep) does not send them again all the same.
        assert await node_a.downlink.deliver(hotel_id) == 0

        result = common_pb2.CommandResult(
            command_id="quick", device_id="dev-1", status=common_pb2.COMMAND_STATUS_SUCCEEDED
        )
        await node_a.downlink.received(hotel_id, bridge_pb2.RemoteCommandResult(result=result))
        # The one left unanswered reads sent once the marks are written; the answered
        # one never did. While they are being written, neither is sent again.
        flushing = asyncio.create_task(node_a.downlink.marks.flush())
        await asyncio.sleep(0)  # one turn: the flush's transaction has begun
        assert set(node_a.downlink.marks.pending(hotel_id)) == {"slow"}
        assert await node_a.downlink.deliver(hotel_id) == 0
        await flushing
        await until_state(node_a, hotel_id, "slow", "sent")
        async with node_a.store.read() as conn:
            rows = await conn.execute(
                sa.select(downlink.c.item_id, downlink.c.state, downlink.c.sends).where(
                    downlink.c.hotel_id == hotel_id
                )
            )
            states = {row.item_id: (row.state, row.sends) for row in rows}
        assert states == {"quick": ("done", 0), "slow": ("sent", 1)}
        assert await node_a.downlink.deliver(hotel_id) == 0
        assert sorted(sent) == ["quick", "slow"]
        # A bridge that opens gets what is not done, marked or not.
        node_a.downlink.opened(hotel_id)
        await until(lambda: sent.count("slow") == 2)
        assert sent.count("quick") == 1


@pytest.mark.redis
@pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_a_command_on_a_node_without_the_bridge_is_written_with_its_entry_or_not_at_all(
    shared: RelayConfig, test_name: str
) -> None:
    async with node(shared, "node-b") as node_b, rest(node_b, test_name) as api_b:
        cloud = await cloud_hotel(api_b)
        hotel = Hotel(cloud.hotel_id, cloud.org_id, "h", "UTC", datetime.now(UTC), None)

        async def send(command_id: str, *, queue: bool, setpoint: float = 21.0) -> str:
            request = remote.CommandRequest(command_id, "dev-1", "set", {"c": setpoint})
            (status,) = await remote.send_commands(
                node_b, hotel, cloud.owner.user_id, [request],
                queue=queue, ttl_s=60, timeout_s=1, wait_s=0,
            )  # fmt: skip
            return status.state

        async def written() -> tuple[list[str], int]:
            async with node_b.store.read() as conn:
                rows = (await conn.execute(sa.select(downlink.c.item_id))).scalars().all()
                entries = (
                    await conn.execute(
                        sa.select(sa.func.count())
                        .select_from(audit_log)
                        .where(audit_log.c.action == "command.sent")
                    )
                ).scalar()
            return sorted(rows), int(entries or 0)

        # No gateway connected anywhere: a command to wait for is refused, nothing written.
        with pytest.raises(GatewayOffline):
            await send("c-1", queue=False)
        assert await written() == ([], 0)
        # Queued: its row and its entry, together.
        assert await send("c-1", queue=True) == "queued"
        assert await written() == (["c-1"], 1)
        # The same id again joins it (a request, so an entry; no second row); the same id
        # for another command is refused and writes nothing.
        assert await send("c-1", queue=True) == "queued"
        assert await written() == (["c-1"], 2)
        with pytest.raises(CommandIdReused):
            await send("c-1", queue=True, setpoint=25.0)
        assert await written() == (["c-1"], 2)
