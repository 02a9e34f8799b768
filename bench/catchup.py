"""Bridge catch-up: a gateway's backlog, buffered while the relay was down, delivered and applied.

A real gateway (`Gateway`: its store, writer and bridge client; Mosquitto for its MQTT
link, which stays idle) is enrolled through the relay's REST API and connected once,
as in production. Then the relay process stops, and `--events` outbox events are
written through the gateway's own store writer: telemetry from about a thousand
sensors, door and button events, some state reports and alerts, and at the very end,
behind the whole backlog, a handful of alarms (breach and gas events with the alerts
they raise, on the priority lane). The relay starts again (`bellhop cloud run`, its
own process) and the gateway's bridge delivers everything; the relay applies each
batch in one transaction and acknowledges it after the commit. Measured from the
moment the bridge is open again until the edge holds the acknowledgement of the last
event, on SQLite and on PostgreSQL (a database of its own, dropped afterwards). The
relay's tables are then counted against what the edge buffered: `lost` and
`duplicated` (device events carry no key, so a second copy would show).

The floor, measured in the same run on the same events: the outbox rows read from the
edge's SQLite with the store's own read (`outbox.read_after`), sent as batch frames of
1,000 (`frames.encode_batch`) over one bare `websockets` connection to a bare server
process that parses each frame and inserts its telemetry and device events with
`executemany` into the relay's own tables (a fresh database at the same schema), one
transaction per frame: no handshake, acknowledgements, window, deduplication or plan.
Rounds of it run one after the other once the gateway has stopped; the fastest counts.

The bridge runs with the edge's `batch_events` at its maximum, 1,000 (the edge's
default is 500: `--batch-events 500`), and the relay's default window. Rates move
with whatever else runs on the machine, so the CPU time each process spent per event
is printed too (`cpu_us_per_event`): the edge, the relay and PostgreSQL's server
processes for its database; the floor's client, server and PostgreSQL.

    .venv/bin/python bench/catchup.py [--quick] [--events N] [--stores sqlite,postgres]

Prints one JSON object as its last line: events, events_per_s_sqlite,
events_per_s_postgres, lost, duplicated, priority_first_ms (the slower store; each
store's too), floor_events_per_s_sqlite, floor_events_per_s_postgres, ratio_sqlite,
ratio_postgres, cpu_us_per_event, and the settings and targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import math
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
import orjson
import psutil
from _load import broker, report
from _pg import create_database, drop_database
from _procs import bytecode_cached, pg_backends
from _remote_sites import tenant
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import frames
from bellhop_bridge.frames import MAX_BATCH_EVENTS, MAX_FRAME_BYTES
from bellhop_edge.bridge.client import BridgeClient, BridgeState
from bellhop_edge.bridge.identity import enrol
from bellhop_edge.config import EdgeConfig, load_config
from bellhop_edge.core.model import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    DeviceEvent,
    EventKind,
    ReportedState,
    TelemetryPoint,
)
from bellhop_edge.core.ops import PutAlert, PutEvent, PutReported, PutTelemetry, WriteOp
from bellhop_edge.gateway import Gateway
from bellhop_edge.localbroker import MosquittoBroker
from bellhop_edge.store import StoreWriter, outbox
from bellhop_edge.store.outbox import OutboxKind
from google.protobuf.json_format import MessageToDict
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

BULK: Final = int(bridge_pb2.LANE_BULK)
PRIORITY: Final = int(bridge_pb2.LANE_PRIORITY)

TARGET_RATIO: Final = 0.5
TARGET_EVENTS_PER_S: Final = {"sqlite": 100_000, "postgres": 50_000}
TARGET_PRIORITY_MS: Final = 1000.0

# The hotel: per room an environment sensor and a thermostat (three metrics each, every
# 10 s) and a door sensor; a gas sensor in every tenth room.
ROOMS: Final = 500
GAS_EVERY: Final = 10
INTERVAL_MS: Final = 10_000
DOOR_EVENTS_PER_TICK: Final = 20
BUTTON_EVENTS_PER_TICK: Final = 5
STATES_EVERY_TICKS: Final = 25
ALERT_EVERY_TICKS: Final = 50
# Alarms queued behind the backlog; each is a device event and the alert it raises.
ALARMS: Final = 5

# Bounds on every wait (seconds).
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
HTTP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.002
# The store writer compacts a chunk at least every idle second; this long without one
# means it is done.
QUIET_S: Final = 2.5


# --- processes ---------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the processes this benchmark starts, their bytecode cached (the
    relay starts twice per store)."""
    return bytecode_cached({**os.environ, **extra})


def cpu_times(pids: list[int]) -> dict[int, float]:
    """User and system CPU seconds of each process (all its threads) so far."""
    out = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            out[pid] = times.user + times.system
    return out


@dataclass
class CpuMeter:
    """CPU time spent by each side between `start` and `stop`.

    A side is a list of processes; a PostgreSQL side is the server processes of one
    database, listed again at `stop` so that connections opened meanwhile count too.
    """

    processes: dict[str, list[int]]
    databases: dict[str, str] = field(default_factory=dict)
    _before: dict[int, float] = field(default_factory=dict)

    async def _pids(self) -> dict[str, list[int]]:
        pids = dict(self.processes)
        for side, url in self.databases.items():
            pids[side] = await pg_backends(url)
        return pids

    async def start(self) -> None:
        pids = await self._pids()
        self._before = cpu_times([pid for side in pids.values() for pid in side])

    async def stop(self) -> dict[str, float]:
        out = {}
        for side, pids in (await self._pids()).items():
            now = cpu_times(pids)
            out[side] = sum(now[pid] - self._before.get(pid, 0.0) for pid in now)
        return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RelayProcess:
    """`bellhop cloud run` on fixed ports, so that it can stop and start again."""

    database_url: str
    workdir: Path
    window_events: int
    window_bytes: int
    http_port: int = field(default_factory=free_port)
    bridge_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "relay.log"

    def start(self, profile: Path | None = None) -> None:
        env = child_env(
            **{
                "BELLHOP_CLOUD_DATABASE_URL": self.database_url,
                "BELLHOP_CLOUD_PORT": str(self.http_port),
                "BELLHOP_CLOUD_BRIDGE_PORT": str(self.bridge_port),
                "BELLHOP_CLOUD_SIGNING_KEY_PATH": str(self.workdir / "signing-key.pem"),
                # Enrolment needs two password hashes; the defaults cost 64 MiB each.
                "BELLHOP_CLOUD_PASSWORD_TIME_COST": "1",
                "BELLHOP_CLOUD_PASSWORD_MEMORY_KIB": "8",
                "BELLHOP_CLOUD_PASSWORD_PARALLELISM": "1",
                "BELLHOP_CLOUD_BRIDGE_WINDOW_EVENTS": str(self.window_events),
                "BELLHOP_CLOUD_BRIDGE_WINDOW_BYTES": str(self.window_bytes),
            }
        )
        command = [sys.executable]
        if profile is not None:
            command += ["-m", "cProfile", "-o", str(profile)]
        command += ["-m", "bellhop_cli.main", "cloud", "run"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def check(self) -> None:
        """Raise if the relay died (with the end of its log, which says why)."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the relay exited with {self.process.returncode}:\n{tail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # A clean stop, as SIGTERM, that also ends in a normal interpreter exit with
        # older relays (uvicorn raised the signal again after its shutdown): a profiled
        # relay still writes its profile.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    async def ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.base_url, timeout=HTTP_TIMEOUT_S) as http:
            while True:
                self.check()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError("the relay did not become ready")
                await asyncio.sleep(0.05)


async def enrol_gateway(relay: RelayProcess, data_dir: Path) -> str:
    """An owner, an organisation, a hotel, and this gateway enrolled for it; the hotel id."""
    owner = await tenant(relay.base_url)
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=HTTP_TIMEOUT_S) as http:
        answer = await http.post(
            f"/v1/hotels/{owner.hotel_id}/enrolment-tokens", json={}, headers=owner.headers
        )
        if answer.status_code != 201:
            raise RuntimeError(f"{answer.request.url}: {answer.status_code} {answer.text}")
        token = answer.json()
    # The gateway's own enrolment (what `bellhop edge enrol` runs): key, proof, identity.
    await asyncio.to_thread(
        enrol, data_dir, relay_url=relay.base_url, token=str(token["token"]), name="bench-gw"
    )
    return owner.hotel_id


# --- PostgreSQL databases of our own ---------------------------------------------------


# --- the hotel and its backlog -----------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    rooms: list[str]
    sensors: list[tuple[str, tuple[str, ...]]]  # device id, its metrics
    doors: list[str]
    gas: list[str]
    thermostats: list[str]
    registry: list[dict[str, str]]

    @classmethod
    def build(cls) -> Fleet:
        rooms = [f"{100 + n}" for n in range(ROOMS)]
        sensors: list[tuple[str, tuple[str, ...]]] = []
        registry: list[dict[str, str]] = []
        doors, gas, thermostats = [], [], []
        for n, room in enumerate(rooms):
            for device_id, kind in (
                (f"env-{room}", "environment_sensor"),
                (f"th-{room}", "thermostat"),
                (f"door-{room}", "door_sensor"),
            ):
                registry.append({"device_id": device_id, "room_id": room, "kind": kind})
            sensors.append((f"env-{room}", ("temperature", "humidity", "co2")))
            sensors.append((f"th-{room}", ("temperature", "setpoint", "valve")))
            doors.append(f"door-{room}")
            thermostats.append(f"th-{room}")
            if n % GAS_EVERY == 0:
                registry.append({"device_id": f"gas-{room}", "room_id": room, "kind": "gas_sensor"})
                sensors.append((f"gas-{room}", ("gas_ppm",)))
                gas.append(f"gas-{room}")
        return cls(rooms, sensors, doors, gas, thermostats, registry)

    @property
    def points_per_tick(self) -> int:
        return sum(len(metrics) for _, metrics in self.sensors)

    def backlog(self, events: int, now: int) -> Iterator[WriteOp]:
        """Ops that append exactly `events` outbox events, the alarms last.

        Device time runs 10 s per round of reports, ending now, so that every
        (device, metric, time) and (device, kind, time) is distinct: a row lost or
        applied twice at the relay shows in the counts.
        """
        alarm_events = 2 * ALARMS
        budget = events - alarm_events
        if budget < 0:
            raise ValueError(f"at least {alarm_events} events")
        per_tick = self.points_per_tick + DOOR_EVENTS_PER_TICK + BUTTON_EVENTS_PER_TICK
        ticks = math.ceil(budget / per_tick) + 1
        base = now - ticks * INTERVAL_MS
        alert_no = 0
        tick = 0
        while budget > 0:
            ts = base + tick * INTERVAL_MS
            for device_id, metrics in self.sensors:
                take = min(len(metrics), budget)
                if take <= 0:
                    break
                yield PutTelemetry(
                    [
                        TelemetryPoint(device_id, metric, ts, 20.0 + (tick % 50) / 10 + i)
                        for i, metric in enumerate(metrics[:take])
                    ]
                )
                budget -= take
            for j in range(DOOR_EVENTS_PER_TICK):
                if budget <= 0:
                    break
                door = self.doors[(tick * DOOR_EVENTS_PER_TICK + j) % len(self.doors)]
                yield PutEvent(DeviceEvent(door, EventKind.DOOR, ts + 1, {"open": j % 2 == 0}))
                budget -= 1
            for j in range(BUTTON_EVENTS_PER_TICK):
                if budget <= 0:
                    break
                thermostat = self.thermostats[(tick * 7 + j) % len(self.thermostats)]
                yield PutEvent(DeviceEvent(thermostat, EventKind.BUTTON, ts + 2, {"button": 1}))
                budget -= 1
            if tick % STATES_EVERY_TICKS == 0:
                for j in range(min(20, budget)):
                    thermostat = self.thermostats[(tick + j) % len(self.thermostats)]
                    values = {"setpoint": 21.0 + j % 3, "mode": "heat"}
                    yield PutReported(ReportedState(thermostat, tick + 1, values, ts + 3))
                    budget -= 1
            if tick % ALERT_EVERY_TICKS == 0 and budget > 0:
                alert_no += 1
                door = self.doors[tick % len(self.doors)]
                yield PutAlert(
                    _alert(f"bench-{alert_no}", AlertKind.DOOR_LEFT_OPEN, door, ts + 4, warn=True)
                )
                budget -= 1
            tick += 1
        # The alarms: what the operator must see first when the link is back.
        for n in range(ALARMS):
            use_gas = n % 2 == 1 and self.gas
            device_id = self.gas[n % len(self.gas)] if use_gas else self.doors[-1 - n]
            kind = EventKind.GAS if use_gas else EventKind.BREACH
            ts = now + n
            yield PutEvent(DeviceEvent(device_id, kind, ts, {"alarm": True}))
            alert_kind = AlertKind.GAS if use_gas else AlertKind.BREACH
            yield PutAlert(_alert(f"alarm-{n}", alert_kind, device_id, ts, warn=False))


def _alert(alert_id: str, kind: AlertKind, device_id: str, ts: int, *, warn: bool) -> Alert:
    return Alert(
        alert_id=alert_id,
        kind=kind,
        severity=AlertSeverity.WARNING if warn else AlertSeverity.CRITICAL,
        state=AlertState.RAISED,
        device_id=device_id,
        room_id=device_id.split("-", 1)[1],
        message=f"{kind.value} at {device_id}",
        raised_at=ts,
    )


async def fill(writer: StoreWriter, fleet: Fleet, events: int) -> float:
    """Write the backlog through the gateway's store writer; returns seconds taken."""
    started = time.perf_counter()
    for op in fleet.backlog(events, int(time.time() * 1000)):
        await writer.put(op)  # waits while the writer is behind, as ingest does
    await writer.flush()
    return time.perf_counter() - started


async def quiescent(writer: StoreWriter, timeout: float) -> None:
    """Wait until the writer has moved the burst's staged telemetry into its index.

    It does so in the background, a chunk per batch or per idle second, once the
    staged rows pass a threshold; a gateway whose backlog grew over an outage has long
    finished, so neither the floor nor the catch-up should share the edge with it.
    Over when no chunk has moved for `QUIET_S`.
    """
    deadline = time.monotonic() + timeout
    moved, since = writer.stats.compacted, time.monotonic()
    while time.monotonic() - since < QUIET_S:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the store writer still compacting after {timeout:.0f} s")
        await asyncio.sleep(0.1)
        if writer.stats.compacted != moved:
            moved, since = writer.stats.compacted, time.monotonic()


@dataclass(frozen=True)
class Census:
    """What the edge buffered after `after`: per lane the last seq, per kind the count."""

    after: int
    last_seq: dict[int, int]
    kinds: dict[int, int]

    @property
    def events(self) -> int:
        return sum(self.kinds.values())


def census(edge_db: Path, after: int) -> Census:
    conn = sqlite3.connect(f"file:{edge_db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT lane, kind, count(*), max(seq) FROM outbox WHERE seq > ? GROUP BY lane, kind",
            (after,),
        ).fetchall()
    finally:
        conn.close()
    last: dict[int, int] = {}
    kinds: dict[int, int] = {}
    for lane, kind, count, top in rows:
        last[lane] = max(last.get(lane, 0), int(top))
        kinds[kind] = kinds.get(kind, 0) + int(count)
    return Census(after, last, kinds)


# --- waiting, bounded -----------------------------------------------------------------------


async def until(
    done: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    check: Callable[[], None] | None = None,
    every: float = POLL_S,
    wake: asyncio.Event | None = None,
) -> float:
    """Wait until `done()` holds, then return the time (perf_counter); at most `timeout` s.

    `done` is tested every `every` seconds, or, given `wake`, whenever it is set (and
    every `every` seconds still, for `check`, which raises if something died).
    """
    deadline = time.monotonic() + timeout
    while not done():
        if check is not None:
            check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        if wake is None:
            await asyncio.sleep(every)
        else:
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), every)
    return time.perf_counter()


# --- the product: the gateway, the outage, the catch-up ------------------------------------


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
    try:
        first = await until(
            lambda: client.stats.acked != resumed,
            timeout,
            "the first acknowledgement",
            check=relay.check,
            every=0.25,
            wake=acked,
        )
        alarms = await until(
            lambda: client.stats.acked.get(PRIORITY, 0) >= last_priority,
            timeout,
            "the alarms",
            check=relay.check,
            every=0.25,
            wake=acked,
        )
        done = await until(
            lambda: client.stats.acked.get(BULK, 0) >= last_bulk,
            timeout,
            "the backlog",
            check=relay.check,
            every=0.25,
            wake=acked,
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
    hotel_id = await enrol_gateway(relay, edge_dir)
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


# --- the floor ----------------------------------------------------------------------------


async def prepare_floor_database(database_url: str, workdir: Path) -> str:
    """A fresh database at the relay's schema, with one hotel; returns its id."""
    from bellhop_cloud.config import load_config as relay_config
    from bellhop_cloud.db.schema import hotels, organisations
    from bellhop_cloud.db.store import Store

    config = relay_config(
        None, database_url=database_url, signing_key_path=workdir / "floor-key.pem"
    )
    store = Store.open(config)
    try:
        await store.migrate()
        now = datetime.now(UTC)
        hotel_id = f"htl_{secrets.token_hex(8)}"
        async with store.write() as conn:
            await conn.execute(
                organisations.insert().values(id="org_floor", name="Floor", created_at=now)
            )
            await conn.execute(
                hotels.insert().values(
                    id=hotel_id, org_id="org_floor", name="Floor", timezone="UTC", created_at=now
                )
            )
    finally:
        await store.close()
    return hotel_id


_EVENT_KINDS: Final = {
    v: k.removeprefix("EVENT_KIND_").lower() for k, v in common_pb2.EventKind.items()
}
_INSERT_TELEMETRY: Final = (
    "INSERT INTO telemetry (hotel_id, device_id, metric, ts, value) VALUES ($1, $2, $3, $4, $5)"
)
_INSERT_EVENT: Final = (
    "INSERT INTO device_events (hotel_id, device_id, kind, ts, data) VALUES ($1, $2, $3, $4, $5)"
)


Rows = list[tuple[Any, ...]]


class SqliteFloor:
    """executemany on one connection with the relay's own settings (db/store.py)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        qmarks = "?, ?, ?, ?, ?"
        self.telemetry_sql = _INSERT_TELEMETRY.replace("$1, $2, $3, $4, $5", qmarks)
        self.event_sql = _INSERT_EVENT.replace("$1, $2, $3, $4, $5", qmarks)

    async def write(self, points: Rows, events: Rows) -> None:
        self.db.execute("BEGIN")
        self.db.executemany(self.telemetry_sql, points)
        if events:
            self.db.executemany(self.event_sql, events)
        self.db.execute("COMMIT")

    async def reset(self) -> None:
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM telemetry")
        self.db.execute("DELETE FROM device_events")
        self.db.execute("COMMIT")


class PostgresFloor:
    """asyncpg's executemany on one connection."""

    def __init__(self, conn: Any) -> None:
        self.pg = conn

    async def write(self, points: Rows, events: Rows) -> None:
        async with self.pg.transaction():
            await self.pg.executemany(_INSERT_TELEMETRY, points)
            if events:
                await self.pg.executemany(_INSERT_EVENT, events)

    async def reset(self) -> None:
        await self.pg.execute("TRUNCATE telemetry, device_events")


async def floor_server(database_url: str, port: int, hotel_id: str) -> None:
    """The floor's relay: parse each batch frame, insert its rows, one transaction each.

    Text messages steer it: "end" is answered with the number of events stored,
    "reset" empties the tables for the next round.
    """
    store: SqliteFloor | PostgresFloor
    if database_url.startswith("sqlite"):
        store = SqliteFloor(database_url.split(":///", 1)[1])
    else:
        import asyncpg

        store = PostgresFloor(await asyncpg.connect(database_url, timeout=5, command_timeout=60))

    async def take(message: bytes) -> int:
        batch = bridge_pb2.Frame.FromString(message).events.events
        points: Rows = []
        events: Rows = []
        for event in batch:
            kind = event.WhichOneof("payload")
            if kind == "telemetry":
                p = event.telemetry
                points.append((hotel_id, p.device_id, p.metric, p.ts.ToMilliseconds(), p.value))
            elif kind == "device_event":
                e = event.device_event
                data = orjson.dumps(MessageToDict(e.data)).decode()
                kind_name = _EVENT_KINDS.get(e.kind, "unspecified")
                events.append((hotel_id, e.device_id, kind_name, e.ts.ToMilliseconds(), data))
        await store.write(points, events)
        return len(batch)

    async def handle(ws: ServerConnection) -> None:
        applied = 0
        async for message in ws:
            if message == "reset":
                await store.reset()
                await ws.send("reset")
            elif isinstance(message, str):
                await ws.send(f"done {applied}")
            else:
                applied += await take(message)

    async with serve(
        handle,
        "127.0.0.1",
        port,
        max_size=MAX_FRAME_BYTES,
        compression=None,
        ping_interval=None,
    ):
        await asyncio.Event().wait()  # until the benchmark terminates this process


@dataclass
class FloorServer:
    """The floor's server process, on a fresh database of the relay's schema."""

    database_url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        hotel_id = await prepare_floor_database(self.database_url, self.workdir)
        command = [__file__, "--floor-server", self.database_url, str(self.port), hotel_id]
        with (self.workdir / "floor.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *command], env=child_env(), stdout=log, stderr=subprocess.STDOUT
            )

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        await until(listening, START_TIMEOUT_S, "the floor server", check=self.check, every=0.02)

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the floor server exited with {self.process.returncode}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


async def floor_run(
    floor: FloorServer, edge_db: Path, buffered: Census, *, reset: bool
) -> tuple[float, dict[str, float]]:
    """The same events, straight from the edge's outbox to the relay's tables.

    `reset`: empty the tables first (a later round). Returns events/s and the CPU time
    per event of each side (µs).
    """
    assert floor.process is not None
    meter = CpuMeter({"floor_client": [os.getpid()], "floor_server": [floor.process.pid]})
    if not floor.database_url.startswith("sqlite"):
        meter.databases["floor_postgres"] = floor.database_url
    timeout = START_TIMEOUT_S + buffered.events / 2_000
    reader = sqlite3.connect(f"file:{edge_db}?mode=ro", uri=True)
    try:
        async with connect(
            f"ws://127.0.0.1:{floor.port}/",
            compression=None,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,
            open_timeout=HTTP_TIMEOUT_S,
            close_timeout=HTTP_TIMEOUT_S,
        ) as ws:
            if reset:
                await ws.send("reset")
                await asyncio.wait_for(ws.recv(), timeout)
            await meter.start()
            started = time.perf_counter()
            seq, sent = buffered.after, 0
            async with asyncio.timeout(timeout):
                while entries := outbox.read_after(reader, seq, MAX_BATCH_EVENTS):
                    await ws.send(frames.encode_batch(e.data for e in entries))
                    seq, sent = entries[-1].seq, sent + len(entries)
                await ws.send("end")
                answer = await ws.recv()
            elapsed = time.perf_counter() - started
    finally:
        reader.close()
    applied = int(str(answer).split()[1])
    if applied != sent or sent != buffered.events:
        raise RuntimeError(f"floor: {sent} sent, {applied} stored, {buffered.events} buffered")
    cpu = {side: round(seconds * 1e6 / sent, 1) for side, seconds in (await meter.stop()).items()}
    return sent / elapsed, cpu


# --- orchestration --------------------------------------------------------------------------


async def one_store(
    store: str, workdir: Path, mq: MosquittoBroker, fleet: Fleet, args: argparse.Namespace
) -> Outcome:
    await asyncio.to_thread(workdir.mkdir)
    databases: list[str] = []
    relay: RelayProcess | None = None
    floor: FloorServer | None = None
    floor_ready: asyncio.Task[None] | None = None
    try:
        if store == "sqlite":
            relay_url = f"sqlite:///{workdir / 'relay.db'}"
            floor_url = f"sqlite:///{workdir / 'floor.db'}"
        else:
            name, relay_url = await create_database("bellhop_catchup")
            databases.append(name)
            name, floor_url = await create_database("bellhop_catchup")
            databases.append(name)
        relay = RelayProcess(relay_url, workdir, args.window_events, args.window_bytes)
        floor = FloorServer(floor_url, workdir)
        # Set up while the product's first steps run (relay, enrolment, backlog).
        floor_ready = asyncio.create_task(floor.start())
        outcome, edge_db, buffered = await product_run(store, relay, mq, fleet, args, floor_ready)
        # After the gateway has stopped: its reads and writes do not share the rounds.
        rounds = [
            await floor_run(floor, edge_db, buffered, reset=n > 0) for n in range(args.floor_rounds)
        ]
        # The faster round is the floor: background load only ever slows a round down.
        outcome.floor_events_per_s, floor_cpu = max(rounds, key=lambda r: r[0])
        outcome.cpu_us_per_event.update(floor_cpu)
        outcome.detail["floor_rounds_events_per_s"] = [round(rate) for rate, _ in rounds]
        print(
            f"{store}: {outcome.events_per_s:,.0f} events/s"
            f" (floor {outcome.floor_events_per_s:,.0f}),"
            f" alarms after {outcome.priority_first_ms:.0f} ms, lost {outcome.lost},"
            f" duplicated {outcome.duplicated}; CPU µs/event {outcome.cpu_us_per_event};"
            f" {outcome.detail}",
            file=sys.stderr,
        )
        return outcome
    finally:
        if floor_ready is not None and not floor_ready.done():
            floor_ready.cancel()
            await asyncio.gather(floor_ready, return_exceptions=True)
        for process in (relay, floor):
            if process is not None:
                await asyncio.to_thread(process.stop)
        for name in databases:
            await drop_database(name)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    fleet = Fleet.build()
    outcomes: dict[str, Outcome] = {}
    with tempfile.TemporaryDirectory(prefix="bellhop-catchup-") as tmp, broker() as mq:
        for store in args.stores:
            outcomes[store] = await one_store(store, Path(tmp) / store, mq, fleet, args)

    def per(store: str, value: Callable[[Outcome], float], digits: int = 0) -> float | None:
        outcome = outcomes.get(store)
        return None if outcome is None else round(value(outcome), digits or None)

    def ratio(store: str) -> float | None:
        outcome = outcomes.get(store)
        if outcome is None or not outcome.floor_events_per_s:
            return None
        return round(outcome.events_per_s / outcome.floor_events_per_s, 3)

    return {
        "events": args.events,
        "events_per_s_sqlite": per("sqlite", lambda o: o.events_per_s),
        "events_per_s_postgres": per("postgres", lambda o: o.events_per_s),
        "lost": sum(o.lost for o in outcomes.values()),
        "duplicated": sum(o.duplicated for o in outcomes.values()),
        "priority_first_ms": round(max(o.priority_first_ms for o in outcomes.values()), 1),
        "priority_first_ms_sqlite": per("sqlite", lambda o: o.priority_first_ms, 1),
        "priority_first_ms_postgres": per("postgres", lambda o: o.priority_first_ms, 1),
        "floor_events_per_s_sqlite": per("sqlite", lambda o: o.floor_events_per_s),
        "floor_events_per_s_postgres": per("postgres", lambda o: o.floor_events_per_s),
        "ratio_sqlite": ratio("sqlite"),
        "ratio_postgres": ratio("postgres"),
        "cpu_us_per_event": {store: o.cpu_us_per_event for store, o in outcomes.items()},
        "reconnect_ms_sqlite": per("sqlite", lambda o: o.reconnect_ms),
        "reconnect_ms_postgres": per("postgres", lambda o: o.reconnect_ms),
        "fill_events_per_s": round(min(o.fill_events_per_s for o in outcomes.values())),
        "floor_rounds": args.floor_rounds,
        "batch_events": args.batch_events,
        "window_events": args.window_events,
        "window_bytes": args.window_bytes,
        "target_ratio": TARGET_RATIO,
        "target_events_per_s_sqlite": TARGET_EVENTS_PER_S["sqlite"],
        "target_events_per_s_postgres": TARGET_EVENTS_PER_S["postgres"],
        "target_priority_first_ms": TARGET_PRIORITY_MS,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events (under 60 s)")
    parser.add_argument("--events", type=int, help="events buffered (default 1,000,000)")
    parser.add_argument(
        "--stores",
        type=lambda s: s.split(","),
        default=["sqlite", "postgres"],
        help="comma-separated: sqlite, postgres",
    )
    parser.add_argument(
        "--batch-events",
        type=int,
        default=MAX_BATCH_EVENTS,
        help="the edge's [bridge] batch_events (its default is 500)",
    )
    parser.add_argument(
        "--window-events", type=int, default=5000, help="the relay's bridge_window_events"
    )
    parser.add_argument(
        "--window-bytes", type=int, default=8 << 20, help="the relay's bridge_window_bytes"
    )
    parser.add_argument(
        "--floor-rounds",
        type=int,
        help="floor rounds, one after the other; the fastest counts (default 2, 1 with --quick)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="cProfile the relay and the edge's loop into DIR"
    )
    parser.add_argument("--floor-server", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop  # the gateway's loop in production (`bellhop edge run`), and uvicorn's

    if args.floor_server:
        url, port, hotel_id = args.floor_server
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(floor_server(url, int(port), hotel_id))
        return
    if args.events is None:
        args.events = 100_000 if args.quick else 1_000_000
    if args.floor_rounds is None:
        args.floor_rounds = 1 if args.quick else 2
    if args.floor_rounds < 1:
        parser.error("at least one floor round")
    unknown = set(args.stores) - set(TARGET_EVENTS_PER_S)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # Every failed reconnect during the outage is a warning; the closes are counted instead.
    logging.getLogger("bellhop_edge.bridge.client").setLevel(logging.ERROR)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report(runner.run(run(args)))


if __name__ == "__main__":
    main()
