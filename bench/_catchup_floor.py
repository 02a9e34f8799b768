"""P5's floor (bench/catchup.py): the same events read from the edge's outbox, sent as
batch frames over one bare websocket to a bare server process that inserts them with
`executemany`, one transaction per frame, into a fresh database at the relay's schema."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson
from _catchup_backlog import Census
from _catchup_processes import (
    HTTP_TIMEOUT_S,
    START_TIMEOUT_S,
    CpuMeter,
    child_env,
    halt,
    until,
)
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import frames
from bellhop_bridge.frames import MAX_BATCH_EVENTS, MAX_FRAME_BYTES
from bellhop_edge.localbroker import free_port
from bellhop_edge.store import outbox
from google.protobuf.json_format import MessageToDict
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

# The floor's server is this benchmark's script, run with --floor-server.
SCRIPT: Final = str(Path(__file__).resolve().parent / "catchup.py")


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
        import asyncpg  # type: ignore[import-untyped]

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
        command = [SCRIPT, "--floor-server", self.database_url, str(self.port), hotel_id]
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
        halt(process, signal.SIGTERM)


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
