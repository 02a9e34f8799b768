"""P10: points/s the gateway's InfluxDB sink writes, against a bare influxdb-client floor.

Load: a gateway store holding a backlog of telemetry points in its outbox (as
after an InfluxDB outage), written by the sink (`bellhop_edge.influx`: read
from SQLite after its cursor, line protocol, gzip, batches through
influxdb-client's synchronous write API, the cursor committed after each
accepted batch) into a real VictoriaMetrics speaking InfluxDB's v2 write API.
The floor is influxdb-client alone writing the same number of lines, prepared
in memory beforehand, in batches of the same size to the same server. The
floor runs first, into other series. `lost`: points of the backlog not found
in the server afterwards, plus what the sink counted as lost. Prints one JSON
object as the last line: points_per_s, floor_points_per_s, ratio, lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bellhop_bridge.influx_core import ClientWriter, SinkCore, point_line, run_sink, series_key
from bellhop_edge.influx import OutboxSource
from bellhop_edge.store import history
from bellhop_edge.store.schema import Synchronous, connect, migrate, transaction
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

HOTEL = "bench-influx"
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
            " VALUES (?, ?, 'environment_sensor', 1, 'online')",
            [(f"r{d}-env", str(100 + d)) for d in range(DEVICES)],
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
    """influxdb-client alone: the same number of lines, built beforehand, same batches."""
    series = [
        series_key("telemetry", {"hotel": "floor", "device": f"r{d}-env", "kind": "e"})
        for d in range(DEVICES)
    ]
    lines = [
        point_line(series[(i // 2) % DEVICES], METRICS[i % 2], float(i % 400) / 10, BASE_MS + i)
        or ""
        for i in range(points)
    ]
    with InfluxDBClient(url=url, token="t", org="o", enable_gzip=True, timeout=30_000) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        started = time.perf_counter()
        for start in range(0, points, BATCH):
            api.write("b", "o", "\n".join(lines[start : start + BATCH]), write_precision="ms")
        return points / (time.perf_counter() - started)


async def _sink(url: str, database: Path, points: int) -> tuple[float, int]:
    conn = connect(database, Synchronous.NORMAL, cache_kib=8192)
    source = OutboxSource(conn, hotel_id=HOTEL, org="bench")
    source.open()
    core = SinkCore(batch_size=BATCH, flush_interval_s=0.05)
    with InfluxDBClient(url=url, token="t", org="o", enable_gzip=True, timeout=30_000) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        writer = ClientWriter(
            lambda lines: api.write("b", "o", "\n".join(lines), write_precision="ms")
        )
        started = time.perf_counter()
        task = asyncio.create_task(run_sink(core, source, writer))
        while source.cursor < points:
            await asyncio.sleep(0.005)
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
    args = parser.parse_args()
    points = 200_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        workdir = Path(tmp)
        database = workdir / "edge.db"
        _store(database, points)
        with victoria(workdir) as url:
            floor = _floor(url, points)
            rate, counted = asyncio.run(_sink(url, database, points))
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
