"""The store writer's msg/s, alone and with the GIL contended, against bare SQLite inserts.

Load: a full hotel's 2,000 devices, one `PutTelemetry` of three metrics per
message (three history rows and three outbox rows), handed to `StoreWriter.put`
as ingest does and timed until `flush` returns; every series exists first, as
in steady state. Measured alone, then with a thread spinning in Python the
whole time: an event loop saturated by MQTT parsing, contending for the GIL.

The floor, in the same run on the same disk: the same rows inserted into the
same tables of a fresh store by plain `executemany` (WAL, synchronous NORMAL,
the writer's cache size), 500 points and their 500 outbox rows per
transaction: SQLite's cost without the writer's thread, queue and ops. The
floor is measured alone only: a per-row `executemany` gives up the GIL at
every row and, against a spinning thread, waits up to the switch interval
(5 ms) to get it back, which would measure the spinner rather than SQLite.

Prints one JSON object as the last line: msgs_per_s and ratio (alone),
gil_msgs_per_s and gil_ratio (contended), floor_msgs_per_s; ratios are to
the floor. The edge's ingest target is target_msgs_per_s for the whole path.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import report
from bellhop_edge.core.model import TelemetryPoint
from bellhop_edge.core.ops import PutTelemetry
from bellhop_edge.store import EdgeStore, StoreWriter

T0 = 1_800_000_000_000
DEVICES = 2000  # a full hotel
METRICS = {"temperature": 21.5, "humidity": 45.0, "luminosity": 300.0}
FLOOR_POINTS_PER_TRANSACTION = 500
TARGET_MSGS_PER_S = 15_000  # P1, the whole edge's ingest


def _messages(count: int) -> list[PutTelemetry]:
    """`count` messages, the first `DEVICES` of them one per device."""
    out = []
    for i in range(count):
        device, ts = f"dev-{i % DEVICES:04d}", T0 + i
        out.append(
            PutTelemetry(tuple(TelemetryPoint(device, m, ts, v) for m, v in METRICS.items()))
        )
    return out


async def writer_rate(path: Path, messages: list[PutTelemetry], *, contended: bool) -> float:
    """Messages per second through `StoreWriter`, after one message per device."""
    EdgeStore.open(path).close()
    stop = threading.Event()

    def spin() -> None:  # stands in for an event loop busy parsing MQTT
        while not stop.is_set():
            sum(range(100))

    spinner = threading.Thread(target=spin, daemon=True)
    async with StoreWriter(path) as writer:
        for message in messages[:DEVICES]:  # every series exists, as in steady state
            writer.submit(message)
        await writer.flush()
        if contended:
            spinner.start()
        try:
            start = time.perf_counter()
            for k, message in enumerate(messages[DEVICES:]):
                await writer.put(message)
                if k % 500 == 0:
                    await asyncio.sleep(0)  # ingest yields to the loop between reads
            await writer.flush()
            elapsed = time.perf_counter() - start
        finally:
            stop.set()
            if contended:
                spinner.join()
    return (len(messages) - DEVICES) / elapsed


def floor_rate(path: Path, messages: list[PutTelemetry]) -> float:
    """The same rows by plain `executemany`, 500 points per transaction."""
    EdgeStore.open(path).close()  # the same tables and indexes
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA cache_size = -32768")  # the writer's
        series: dict[tuple[str, str], int] = {}
        conn.execute("BEGIN")
        for message in messages[:DEVICES]:
            for p in message.points:
                cursor = conn.execute(
                    "INSERT INTO series (device_id, metric) VALUES (?, ?)", (p.device_id, p.metric)
                )
                series[(p.device_id, p.metric)] = int(cursor.lastrowid or 0)
        conn.execute("COMMIT")
        rows = [
            (series[(p.device_id, p.metric)], p.ts, p.value)
            for message in messages
            for p in message.points
        ]
        now = int(time.time() * 1000)

        def insert(chunk: list[tuple[int, int, float]]) -> None:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO telemetry_recent (series_id, ts, value) VALUES (?, ?, ?)", chunk
            )
            conn.executemany(
                "INSERT INTO outbox (ts, kind, series_id, point_ts, value) VALUES (?, 3, ?, ?, ?)",
                [(now, *row) for row in chunk],
            )
            conn.execute("COMMIT")

        warm = DEVICES * len(METRICS)
        for i in range(0, warm, FLOOR_POINTS_PER_TRANSACTION):  # as the writer's warm-up
            insert(rows[i : min(i + FLOOR_POINTS_PER_TRANSACTION, warm)])
        start = time.perf_counter()
        for i in range(warm, len(rows), FLOOR_POINTS_PER_TRANSACTION):
            insert(rows[i : i + FLOOR_POINTS_PER_TRANSACTION])
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    return (len(messages) - DEVICES) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, one round (< 60 s)")
    args = parser.parse_args()
    count, rounds = (32_000, 1) if args.quick else (152_000, 3)
    messages = _messages(count)
    floors, alone, contended = [], [], []
    # The cases take turns, so that other load on the machine falls on all alike.
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bellhop-writer-") as tmp:
            floors.append(floor_rate(Path(tmp) / "floor.db", messages))
            alone.append(await writer_rate(Path(tmp) / "alone.db", messages, contended=False))
            contended.append(await writer_rate(Path(tmp) / "gil.db", messages, contended=True))
    floor, best, best_gil = max(floors), max(alone), max(contended)
    report(
        {
            "messages": count - DEVICES,
            "rounds": rounds,
            "msgs_per_s": round(best),
            "points_per_s": round(best * len(METRICS)),
            "floor_msgs_per_s": round(floor),
            "ratio": round(best / floor, 3),
            "gil_msgs_per_s": round(best_gil),
            "gil_ratio": round(best_gil / floor, 3),
            "target_msgs_per_s": TARGET_MSGS_PER_S,
        }
    )


if __name__ == "__main__":
    asyncio.run(main())
