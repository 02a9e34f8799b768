"""P5's product run (bench/catchup.py): a real gateway connected once, the relay down
while the backlog is written, the relay back, and the catch-up timed and counted."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from _catchup_backlog import Census, Fleet, census, fill, quiescent
from _catchup_processes import START_TIMEOUT_S, STOP_TIMEOUT_S, CpuMeter, RelayProcess, until
from _remote_sites import enrol_gateway, tenant
from bellhop.bridge.v1 import bridge_pb2
from bellhop_edge.bridge.client import BridgeClient, BridgeState
from bellhop_edge.config import EdgeConfig, load_config
from bellhop_edge.gateway import Gateway
from bellhop_edge.localbroker import MosquittoBroker
from bellhop_edge.store.outbox import OutboxKind

BULK: Final = int(bridge_pb2.LANE_BULK)
PRIORITY: Final = int(bridge_pb2.LANE_PRIORITY)


@dataclass
class Outcome:
    events: int = 0
    events_per_s: float = 0.0
    priority_first_ms: float = 0.0
    reconnect_ms: float = 0.0
    fill_events_per_s: float = 0.0
    lost: int = 0
    duplicated: int = 0
    floor_events_per_s: float = 0.0
    # CPU time per event of each process (the edge, the relay, PostgreSQL's server; the
    # floor's two sides and its PostgreSQL): the cost that a quieter machine would not
    # change, where the rates move with whatever else shares the two cores.
    cpu_us_per_event: dict[str, float] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


def edge_config(
    data_dir: Path, hotel_id: str, mq: MosquittoBroker, fleet: Fleet, batch_events: int
) -> EdgeConfig:
    creds = mq.add_gateway(hotel_id)
    mq.reload()
    return load_config(
        overrides={
            "hotel_id": hotel_id,
            "data_dir": str(data_dir),
            "log_level": "WARNING",
            "mqtt": {
                "host": mq.host,
                "port": mq.port,
                "username": creds.username,
                "password": creds.password,
            },
            "api": {"listen": "127.0.0.1:0"},
            # No device reports over MQTT here: silence must not raise offline alerts.
            "liveness": {"heartbeat_timeout_s": 86400},
            # Retention runs once at start-up (empty outbox); not again during the run.
            "retention": {"run_every_s": 86400},
            # Back within a second of the relay's return. Not quicker: every attempt
            # counts the whole backlog first (BridgeClient.run), a scan of the outbox.
            "bridge": {
                "batch_events": batch_events,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 1.0,
                "connect_timeout_s": 5,
            },
            "rooms": [{"room_id": r, "floor": int(r) // 100} for r in fleet.rooms],
            "devices": fleet.registry,
        }
    )


def bridge_of(gateway: Gateway) -> BridgeClient:
    client = gateway.bridge
    if client is None:
        raise RuntimeError("the gateway has no bridge: not enrolled?")
    return client


@dataclass(frozen=True)
class CatchUp:
    reconnect_s: float  # from the relay's start to the bridge open again
    first_ack_s: float  # from the bridge open to the first batch acknowledged
    alarms_s: float  # from the bridge open to the last alarm acknowledged
    done_s: float  # from the bridge open to the last event acknowledged
    cpu_s: dict[str, float]  # CPU time per side meanwhile


async def catch_up(
    gateway: Gateway, relay: RelayProcess, buffered: Census, profile: Path | None
) -> CatchUp:
    """Start the relay and wait until the edge holds the acknowledgement of every event."""
    client = bridge_of(gateway)
    opens = client.stats.opens
    last_priority = buffered.last_seq.get(PRIORITY, 0)
    last_bulk = buffered.last_seq.get(BULK, 0)
    timeout = START_TIMEOUT_S + buffered.events / 2_000
    # Each acknowledgement is recorded through the writer, whose report wakes the waits:
    # no polling loop competes with the bridge for the edge's event loop.
    acked = asyncio.Event()
    gateway.writer.add_listener(lambda _report: acked.set())
    profiler = cProfile.Profile() if profile is not None else None
    spawned = time.perf_counter()
    relay.start(profile.with_name(f"{profile.name}-relay.prof") if profile else None)
    opened = await until(
        lambda: client.stats.opens > opens, START_TIMEOUT_S, "the bridge", check=relay.check
    )
    assert relay.process is not None
    resumed = dict(client.stats.acked)
    meter = CpuMeter({"edge": [os.getpid()], "relay": [relay.process.pid]})
    if not relay.database_url.startswith("sqlite"):
        meter.databases["postgres"] = relay.database_url
    await meter.start()
    if profiler is not None:
        profiler.enable()

    async def acked_until(done: Callable[[], bool], what: str) -> float:
        return await until(done, timeout, what, check=relay.check, every=0.25, wake=acked)

    try:
        first = await acked_until(
            lambda: client.stats.acked != resumed, "the first acknowledgement"
        )
        alarms = await acked_until(
            lambda: client.stats.acked.get(PRIORITY, 0) >= last_priority, "the alarms"
        )
        done = await acked_until(
            lambda: client.stats.acked.get(BULK, 0) >= last_bulk, "the backlog"
        )
    finally:
        if profiler is not None and profile is not None:
            profiler.disable()
            profiler.dump_stats(profile.with_name(f"{profile.name}-edge.prof"))
    cpu = await meter.stop()
    return CatchUp(opened - spawned, first - opened, alarms - opened, done - opened, cpu)


async def relay_rows(database: str, hotel_id: str) -> dict[str, int]:
    """The relay's rows for the hotel: telemetry, device events (all, distinct), alerts."""
    queries = {
        "telemetry": "SELECT count(*) FROM telemetry WHERE hotel_id = $1",
        "events": "SELECT count(*) FROM device_events WHERE hotel_id = $1",
        "distinct_events": "SELECT count(*) FROM (SELECT DISTINCT device_id, kind, ts"
        " FROM device_events WHERE hotel_id = $1) AS d",
        "alerts": "SELECT count(*) FROM alerts WHERE hotel_id = $1",
    }
    if database.startswith("sqlite"):
        conn = sqlite3.connect(f"file:{database.split(':///', 1)[1]}?mode=ro", uri=True)
        try:
            return {
                k: int(conn.execute(q.replace("$1", "?"), (hotel_id,)).fetchone()[0])
                for k, q in queries.items()
            }
        finally:
            conn.close()
    import asyncpg  # type: ignore[import-untyped]

    pg = await asyncpg.connect(database, timeout=5)
    try:
        return {k: int(await pg.fetchval(q, hotel_id, timeout=60)) for k, q in queries.items()}
    finally:
        await pg.close()


def tally(buffered: Census, rows: dict[str, int]) -> tuple[int, int]:
    """(lost, duplicated) from what the edge buffered and what the relay holds.

    The relay held no telemetry, device events or alerts of this hotel before the
    outage (only the registry was sent then). Telemetry rows are keyed, so a
    second copy of a point cannot show; device events are not, so it would.
    """
    kinds = buffered.kinds
    lost = (
        max(0, kinds.get(OutboxKind.TELEMETRY, 0) - rows["telemetry"])
        + max(0, kinds.get(OutboxKind.DEVICE_EVENT, 0) - rows["distinct_events"])
        + max(0, kinds.get(OutboxKind.ALERT, 0) - rows["alerts"])
    )
    duplicated = rows["events"] - rows["distinct_events"]
    return lost, duplicated


def note(store: str, began: float, message: str) -> None:
    print(f"{store} {time.perf_counter() - began:6.1f} s: {message}", file=sys.stderr)


async def product_run(
    store: str,
    relay: RelayProcess,
    mq: MosquittoBroker,
    fleet: Fleet,
    args: argparse.Namespace,
    floor_ready: asyncio.Task[None],
) -> tuple[Outcome, Path, Census]:
    """The gateway connected, the relay down, the backlog written, the relay back.

    `floor_ready` (the floor's database and server, set up meanwhile) is waited for
    before the relay comes back, so that nothing else runs during the catch-up.
    """
    began = time.perf_counter()
    outcome = Outcome()
    edge_dir = relay.workdir / "edge"
    profile = Path(args.profile) / store if args.profile else None
    relay.start()
    await relay.ready()
    # An owner, an organisation, a hotel, and this gateway enrolled for it.
    owner = await tenant(relay.base_url)
    await enrol_gateway(relay, owner, edge_dir)
    hotel_id = owner.hotel_id
    config = edge_config(edge_dir, hotel_id, mq, fleet, args.batch_events)
    note(store, began, "relay up, gateway enrolled")
    async with Gateway(config) as gateway:
        client = bridge_of(gateway)
        note(store, began, "gateway up")
        # Connected once, as before any outage: the relay has its registry and snapshot.
        await until(
            lambda: client.state is BridgeState.OPEN,
            START_TIMEOUT_S,
            "the first connection",
            check=relay.check,
            every=0.02,
        )
        note(store, began, "bridge open")
        await until(
            lambda: gateway.store.outbox_backlog().total == 0,
            START_TIMEOUT_S,
            "the registry to be acknowledged",
            check=relay.check,
            every=0.05,
        )
        before = gateway.store.outbox_last_seq()
        note(store, began, "registry acknowledged")
        # Off the loop: the relay's shutdown closes the bridge, and the gateway on this
        # loop must answer that close for the relay to exit at once.
        await asyncio.to_thread(relay.stop)
        await until(
            lambda: client.state is not BridgeState.OPEN, STOP_TIMEOUT_S, "the link to drop"
        )
        note(store, began, "gateway connected once; the relay is down")
        fill_s = await fill(gateway.writer, fleet, args.events)
        buffered = census(config.database_path, before)
        if buffered.events != args.events:
            raise RuntimeError(f"{buffered.events} events buffered, {args.events} meant")
        kinds = {OutboxKind(k).name.lower(): n for k, n in sorted(buffered.kinds.items())}
        note(store, began, f"{buffered.events} events buffered in {fill_s:.1f} s: {kinds}")
        await quiescent(gateway.writer, START_TIMEOUT_S + args.events / 10_000)
        note(
            store, began, f"edge store settled ({gateway.writer.stats.compacted} points compacted)"
        )
        await asyncio.wait_for(floor_ready, START_TIMEOUT_S)
        note(store, began, "the relay starts")
        caught = await catch_up(gateway, relay, buffered, profile)
        stats = client.stats
    note(store, began, f"caught up in {caught.done_s:.1f} s")
    rows = await relay_rows(relay.database_url, hotel_id)
    await asyncio.to_thread(relay.stop)
    outcome.events = buffered.events
    outcome.events_per_s = buffered.events / caught.done_s
    outcome.priority_first_ms = caught.alarms_s * 1000
    outcome.reconnect_ms = caught.reconnect_s * 1000
    outcome.fill_events_per_s = buffered.events / fill_s
    outcome.lost, outcome.duplicated = tally(buffered, rows)
    outcome.cpu_us_per_event = {
        side: round(seconds * 1e6 / buffered.events, 1) for side, seconds in caught.cpu_s.items()
    }
    outcome.detail = {
        "catch_up_s": round(caught.done_s, 2),
        "first_ack_ms": round(caught.first_ack_s * 1000, 1),
        "relay_rows": rows,
        "closes": dict(stats.closes),
    }
    return outcome, config.database_path, buffered
