"""Two relay nodes on one PostgreSQL and one Redis: the short cuts of the two-node path
(a nudge that carries the items it announces) keep the database the truth."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop_cloud.bridge.downlink import CARRY_MAX, NUDGES, Item, ItemKind, now_ms
from bellhop_cloud.bridge.items import carried, carry
from bellhop_cloud.config import BusBackend, RelayConfig
from bellhop_cloud.db.schema import downlink
from bellhop_cloud.db.store import relaxed
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
