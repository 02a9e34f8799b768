"""Shared pieces of the benchmarks: a broker, a C publisher load, figures."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bellhop_edge.localbroker import Credentials, MosquittoBroker


@contextmanager
def broker(*, persistence: bool = False) -> Iterator[MosquittoBroker]:
    """A broker for the load; `persistence` as in production (queue saved every second)."""
    with tempfile.TemporaryDirectory(prefix="bellhop-bench-") as tmp:
        mq = MosquittoBroker(Path(tmp), persistence=persistence)
        mq.start()
        try:
            yield mq
        finally:
            mq.stop()


# Device times grow across waves of load, as a real device's clock does.
_T0 = int(time.time() * 1000)


def telemetry_lines(device_id: str, count: int, *, wave: int = 0) -> bytes:
    now = _T0 + wave * count
    start_seq = 1 + wave * count
    lines = (
        f'{{"v":1,"ts":{now + i},"seq":{start_seq + i},'
        f'"metrics":{{"temperature":{20 + (i % 50) / 10},"humidity":{40 + i % 20},"luminosity":{300 + i % 100}}}}}'
        for i in range(count)
    )
    return ("\n".join(lines) + "\n").encode()


def publish_load(
    mq: MosquittoBroker,
    hotel_id: str,
    devices: dict[str, Credentials],
    per_device: int,
    *,
    qos: int = 0,
    wave: int = 0,
) -> float:
    """One `mosquitto_pub -l` per device, all at once; returns seconds taken."""
    files = []
    procs = []
    tmp = tempfile.mkdtemp(prefix="bellhop-load-")
    for device_id in devices:
        path = Path(tmp) / f"{device_id}.txt"
        path.write_bytes(telemetry_lines(device_id, per_device, wave=wave))
        files.append(path)
    start = time.perf_counter()
    for path, (device_id, creds) in zip(files, devices.items(), strict=True):
        with path.open("rb") as stdin:
            procs.append(
                subprocess.Popen(
                    [
                        "mosquitto_pub",
                        "-h",
                        mq.host,
                        "-p",
                        str(mq.port),
                        "-q",
                        str(qos),
                        "-u",
                        creds.username,
                        "-P",
                        creds.password,
                        "-i",
                        f"load-{device_id}",
                        "-t",
                        f"hotel/{hotel_id}/device/{device_id}/telemetry",
                        "-l",
                    ],
                    stdin=stdin,
                )
            )
    for proc in procs:
        proc.wait(timeout=600)
    for path in files:
        path.unlink()
    os.rmdir(tmp)
    return time.perf_counter() - start


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(figures: dict[str, object]) -> None:
    """Print the benchmark's figures; the JSON object is the last line."""
    for key, value in figures.items():
        print(f"  {key:>18}: {value}", file=sys.stderr)
    print(json.dumps(figures))
