"""P10: points/s the gateway's InfluxDB sink writes, against a bare influxdb-client floor.

Load: a gateway store holding a backlog of telemetry points in its outbox (as
after an InfluxDB outage), written by the sink (`bellhop_edge.influx`: read
from SQLite after its cursor, line protocol, gzip, batches through
influxdb-client's synchronous write API, the cursor committed after each
accepted batch) into a real VictoriaMetrics speaking InfluxDB's v2 write API.
The floor is influxdb-client alone writing the same points (the same tags but
for the hotel's name, of the same length; the same fields, values and
times) as line protocol prepared in memory beforehand, in batches of the same
size, gzip on, through the same synchronous write API to the same server: the
bare cost of getting them into InfluxDB. Floor and sink run in turn, three
rounds by default (the sink from the outbox's first row each time), and the
best of each is reported. `lost`: points of the backlog not found in the
server afterwards, plus what the sink counted as lost. Prints one JSON object
as the last line: points_per_s, floor_points_per_s, ratio, lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bellhop_bridge.influx_core import Batch, SinkCore, point_line, series_key
from bellhop_bridge.influx_driver import ClientWriter, run_sink
from bellhop_edge.core.model import TelemetryPoint
from bellhop_edge.core.ops import PutTelemetry
from bellhop_edge.influx import READ_AHEAD, OutboxSource
from bellhop_edge.store.apply import Applier
from bellhop_edge.store.schema import Synchronous, connect, migrate, transaction
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

HOTEL = "bench-influx"
FLOOR_HOTEL = "floor-influx"  # as long as HOTEL: the floor's lines are as long as the sink's
ORG = "bench"
KIND = "environment_sensor"
DEVICES = 200
METRICS = ("temperature", "humidity")
BATCH = 5000
BASE_MS = 1_700_000_000_000
# CPU time of this process a point, each round's, by side.
CPU_US: dict[str, list[float]] = {"floor": [], "sink": []}
# Points the writer applies in one transaction (one run of stored lines).
RUN = 1000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def victoria(workdir: Path) -> Iterator[str]:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        sys.exit("victoria-metrics is not installed (apt-get install victoria-metrics)")
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"-storageDataPath={workdir / 'vm'}",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-search.latencyOffset=0s",
            "-retentionPeriod=100y",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url + "/health", timeout=1) as answer,
            ):
                if answer.read() == b"OK":
                    break
            if time.monotonic() > deadline:
                sys.exit("victoria-metrics did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _store(path: Path, points: int) -> None:
    """A gateway store whose outbox holds `points` telemetry points the sink has not written.

    The sink is on from the first outbox row, as if InfluxDB had been away since then,
    and the points are applied as the gateway's writer applies them (`Applier`, which
    stores their lines for the sink), `RUN` points per transaction.
    """
    conn = connect(path, Synchronous.NORMAL, cache_kib=65536)
    migrate(conn)
    with transaction(conn):
        conn.executemany(
            "INSERT INTO devices (device_id, room_id, kind, registered, connectivity)"
            " VALUES (?, ?, ?, 1, 'online')",
            [(f"r{d}-env", str(100 + d), KIND) for d in range(DEVICES)],
        )
        conn.execute(
            "UPDATE influx_sink SET enabled = 1, cursor = 0, org = ?, hotel = ? WHERE id = 1",
            (ORG, HOTEL),
        )
    applier = Applier(conn)
    # Point i: device (i % 400) // 2, metric i % 2 (the floor's lines are made the same way).
    series = [(f"r{d}-env", m) for d in range(DEVICES) for m in METRICS]
    for start in range(0, points, RUN):
        # One message per device carries both its metrics, as a device sends them.
        ops = [
            PutTelemetry([_point(series, i), _point(series, i + 1)])
            for i in range(start, min(points, start + RUN), 2)
        ]
        with transaction(conn):
            applier.apply_batch(ops, BASE_MS)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _point(series: list[tuple[str, str]], i: int) -> TelemetryPoint:
    device, metric = series[i % len(series)]
    return TelemetryPoint(device, metric, BASE_MS + i, float(i % 400) / 10)


def _stored_mib(path: Path) -> tuple[float, float]:
    """The store's size and the part of it that is stored lines, in MiB."""
    conn = sqlite3.connect(path)
    try:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        total = int(conn.execute("PRAGMA page_count").fetchone()[0]) * page
        lines = conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'influx_lines'")
        return total / 2**20, int(lines.fetchone()[0] or 0) / 2**20
    finally:
        conn.close()


def _floor(url: str, points: int) -> float:
    """influxdb-client alone: the same points as lines built beforehand, same batches."""
    series = [
        series_key(
            "telemetry",
            {
                "org": ORG,
                "hotel": FLOOR_HOTEL,
                "room": str(100 + d),
                "device": f"r{d}-env",
                "kind": KIND,
            },
        )
        for d in range(DEVICES)
    ]
    # Point i of the store is series i % (DEVICES * 2): device (i % 400) // 2, metric i % 2.
    lines = [
        point_line(
            series[(i % (DEVICES * 2)) // 2],
            METRICS[i % 2],
            float(i % 400) / 10,
            BASE_MS + i,
        )
        or ""
        for i in range(points)
    ]
    with InfluxDBClient(url=url, token="t", org="o", enable_gzip=True, timeout=30_000) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, points, BATCH):
            api.write("b", "o", "\n".join(lines[start : start + BATCH]), write_precision="ms")
        CPU_US["floor"].append((time.process_time() - cpu) * 1e6 / points)
        return points / (time.perf_counter() - started)


class _Source(OutboxSource):
    """The sink's source, telling the moment its cursor passes the backlog's end."""

    def __init__(self, conn: sqlite3.Connection, points: int) -> None:
        super().__init__(conn, hotel_id=HOTEL, org=ORG)
        self.points = points
        self.done = asyncio.Event()

    async def commit(self, batch: Batch) -> None:
        await super().commit(batch)
        if self.cursor >= self.points:
            self.done.set()


async def _sink(url: str, database: Path, points: int) -> tuple[float, int]:
    """The sink writing the whole backlog (a fresh copy of the store each round: the
    sink deletes the lines it has written)."""
    conn = connect(database, Synchronous.NORMAL, cache_kib=8192)
    # Told by the last commit rather than polled: a poll would add its period to the
    # sink's time and wake the event loop while the sink works.
    source = _Source(conn, points)
    source.open()
    core = SinkCore(batch_size=BATCH, flush_interval_s=0.05)
    with InfluxDBClient(url=url, token="t", org="o", enable_gzip=True, timeout=30_000) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        writer = ClientWriter(
            lambda lines: api.write("b", "o", "\n".join(lines), write_precision="ms")
        )
        started, cpu = time.perf_counter(), time.process_time()
        task = asyncio.create_task(run_sink(core, source, writer, read_ahead=READ_AHEAD))
        await source.done.wait()
        elapsed = time.perf_counter() - started
        CPU_US["sink"].append((time.process_time() - cpu) * 1e6 / points)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    conn.close()
    return points / elapsed, source.lost


def _stored(url: str) -> int:
    """Distinct (series, time) samples of the sink's hotel in the server."""
    with contextlib.suppress(OSError):
        urllib.request.urlopen(url + "/internal/force_flush", timeout=30).close()
    query = urllib.parse.urlencode({"match[]": f'{{__name__=~"telemetry_.*",hotel="{HOTEL}"}}'})
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/export?{query}", timeout=60) as answer:
            for text in answer.read().splitlines():
                row = json.loads(text)
                key = json.dumps(row["metric"], sort_keys=True)
                seen.update((key, int(ts)) for ts in row["timestamps"])
        if time.monotonic() > deadline or seen:
            return len(seen)
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller load, same shape (< 60 s)")
    parser.add_argument("--rounds", type=int, default=3, help="floor and sink in turn (best of)")
    args = parser.parse_args()
    points = 200_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        workdir = Path(tmp)
        built = workdir / "built.db"
        _store(built, points)
        store_mib, lines_mib = _stored_mib(built)
        database = workdir / "edge.db"
        with victoria(workdir) as url:
            # In turn, best of each: a burst of load from elsewhere on a shared machine
            # then costs one round of one side, not the ratio. Rounds after the first
            # rewrite the same samples on both sides.
            floors, rates = [], []
            for _ in range(max(1, args.rounds)):
                floors.append(_floor(url, points))
                for suffix in ("-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)
                shutil.copyfile(built, database)
                rate, counted = asyncio.run(_sink(url, database, points))
                rates.append(rate)
            floor, rate = max(floors), max(rates)
            # Fresh samples become searchable within a second or two.
            deadline = time.monotonic() + 20
            while (stored := _stored(url)) < points and time.monotonic() < deadline:
                time.sleep(0.5)
    result = {
        "points": points,
        "points_per_s": round(rate),
        "floor_points_per_s": round(floor),
        "ratio": round(rate / floor, 3),
        # This process's CPU time (every thread; not the server's) a point, least of the rounds.
        "cpu_us_per_point": round(min(CPU_US["sink"]), 2),
        "floor_cpu_us_per_point": round(min(CPU_US["floor"]), 2),
        "lost": points - stored + counted,
        "store_mib": round(store_mib, 1),
        "lines_mib": round(lines_mib, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
