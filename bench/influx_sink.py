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
from bellhop_edge.influx import READ_AHEAD, OutboxSource
from bellhop_edge.store import history
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
    """A gateway store whose outbox holds `points` telemetry points the sink has not written."""
    conn = connect(path, Synchronous.NORMAL, cache_kib=65536)
    migrate(conn)
    with transaction(conn):
        conn.executemany(
            "INSERT INTO devices (device_id, room_id, kind, registered, connectivity)"
            " VALUES (?, ?, ?, 1, 'online')",
            [(f"r{d}-env", str(100 + d), KIND) for d in range(DEVICES)],
        )
        index = history.SeriesIndex(conn)
        ids = [index.id_for(f"r{d}-env", m) for d in range(DEVICES) for m in METRICS]
        rows = [(ids[i % len(ids)], BASE_MS + i, float(i % 400) / 10) for i in range(points)]
        for start in range(0, points, 50_000):
            history.insert_points(conn, rows[start : start + 50_000], outbox_ts=BASE_MS)
        # On from the first outbox row, as if InfluxDB had been away since then.
        conn.execute("UPDATE influx_sink SET enabled = 1, cursor = 0 WHERE id = 1")
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
        started = time.perf_counter()
        for start in range(0, points, BATCH):
            api.write("b", "o", "\n".join(lines[start : start + BATCH]), write_precision="ms")
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
    """The sink writing the whole backlog again (from the outbox's first row)."""
    conn = connect(database, Synchronous.NORMAL, cache_kib=8192)
    with transaction(conn):
        conn.execute("UPDATE influx_sink SET cursor = 0 WHERE id = 1")
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
        started = time.perf_counter()
        task = asyncio.create_task(run_sink(core, source, writer, read_ahead=READ_AHEAD))
        await source.done.wait()
        elapsed = time.perf_counter() - started
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
        database = workdir / "edge.db"
        _store(database, points)
        with victoria(workdir) as url:
            # In turn, best of each: a burst of load from elsewhere on a shared machine
            # then costs one round of one side, not the ratio. Rounds after the first
            # rewrite the same samples on both sides.
            floors, rates = [], []
            for _ in range(max(1, args.rounds)):
                floors.append(_floor(url, points))
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
        "lost": points - stored + counted,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
