"""The relay's InfluxDB sink on PostgreSQL, two nodes on one database.

Multi-row inserts into `telemetry` and `device_events` fire the journal's
statement-level triggers (migration 0006); one node at a time holds the sink's
advisory lock and writes, and when it stops the other takes over: every point
and event reaches a real server speaking InfluxDB's v2 write API, and nothing is
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bellhop_cloud import influx
from bellhop_cloud.config import InfluxConfig, RelayConfig
from bellhop_cloud.db.schema import device_events, hotels, influx_journal, organisations, telemetry
from bellhop_cloud.influx import RelaySink
from bellhop_cloud.relay import Relay

from tests.support.victoria import VictoriaMetrics, victoria_metrics
from tests.support.waiting import until

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
ORG, HOTEL = "org-pg", "h-pg"


@contextlib.asynccontextmanager
async def node(config: RelayConfig, name: str) -> AsyncIterator[tuple[Relay, RelaySink]]:
    relay = await Relay.open(config.model_copy(update={"node_id": name}))
    try:
        async with RelaySink.running(relay.config, relay.store, relay.metrics) as sink:
            assert sink is not None
            yield relay, sink
    finally:
        await relay.close()


async def arrived(vm: VictoriaMetrics, count: int, timeout: float) -> None:
    async def mine() -> list[Any] | None:
        have = await asyncio.to_thread(vm.samples, "(telemetry|device_event)_.*")
        found = [k for k in have if ("org", ORG) in k[1]]
        return found if len(found) >= count else None

    found = await until(mine, timeout, f"{count} samples in InfluxDB", every=0.1)
    assert len(found) == count


async def applied(relay: Relay, first: int, count: int) -> None:
    """`count` points and one device event, each table in one multi-row statement."""
    points = [
        {"hotel_id": HOTEL, "device_id": "d1", "metric": "humidity", "ts": first + n, "value": n}
        for n in range(count)
    ]
    event = {"hotel_id": HOTEL, "device_id": "d1", "kind": "door", "ts": first, "data": {}}
    async with relay.store.write() as conn:
        await conn.execute(telemetry.insert(), points)
        await conn.execute(device_events.insert(), [event])


@pytest.mark.timeout(120)
async def test_one_node_writes_at_a_time_and_the_other_takes_over(
    relay_config: RelayConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(influx, "LEASE_RETRY_S", 0.2)
    with victoria_metrics(tmp_path / "vm") as vm:
        settings: dict[str, Any] = {
            "enabled": True,
            "url": vm.url,
            "token": "not-checked-by-this-server",
            "flush_interval_s": 0.05,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        }
        config = relay_config.model_copy(update={"influx": InfluxConfig(**settings)})
        now = datetime.now(UTC)
        base = int(now.timestamp() * 1000) - 60_000
        stacks = {name: contextlib.AsyncExitStack() for name in "ab"}
        relays: dict[str, Relay] = {}
        sinks: dict[str, RelaySink] = {}
        try:
            for name, stack in stacks.items():
                relays[name], sinks[name] = await stack.enter_async_context(node(config, name))
            await until(lambda: any(s.lag().running for s in sinks.values()), 20, "a leader")
            leader = next(n for n, s in sinks.items() if s.lag().running)
            other = "b" if leader == "a" else "a"
            assert not sinks[other].lag().running  # one lock, one writer
            store = relays[other].store
            async with store.write() as conn:
                await conn.execute(
                    organisations.insert(), [{"id": ORG, "name": "o", "created_at": now}]
                )
                hotel = {"id": HOTEL, "org_id": ORG, "name": "h", "timezone": "UTC"}
                await conn.execute(hotels.insert(), [{**hotel, "created_at": now}])
            await applied(relays[other], base, 500)
            await arrived(vm, 500 + 1, 30)  # the points and the event's count
            # The leader stops: the other node takes the lock over and writes what follows.
            await stacks[leader].aclose()
            await until(lambda: sinks[other].lag().running, 20, "the other node takes over")
            await applied(relays[other], base + 1000, 500)
            await arrived(vm, 2 * 501, 30)
            journal = sa.select(sa.func.count()).select_from(influx_journal)

            async def emptied() -> bool:
                async with store.read() as conn:
                    return bool((await conn.execute(journal)).scalar_one() == 0)

            await until(emptied, 10, "the journal emptied")
            assert sinks[other].lag().lost == 0
        finally:
            for stack in stacks.values():
                await stack.aclose()
