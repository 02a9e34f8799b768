"""Shared pieces of the benchmarks: a broker, a C publisher load, figures."""

from __future__ import annotations

import json
import shutil
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
) -> int:
    """One `mosquitto_pub -l` per device, all at once; returns how many the broker took.

    Returns once every publisher has exited. At QoS 1 each publisher prints its
    protocol exchange (`-d`) and the broker's PUBACKs in it are counted: a
    PUBACK is the broker's promise to deliver, so that count, not the lines
    written, is what the subscriber must end up with. At QoS 0 nothing is
    acknowledged; a publisher that exits 0 has sent every line. A publisher
    that fails is reported on stderr with the end of its output.
    """
    tmp = Path(tempfile.mkdtemp(prefix="bellhop-load-"))
    procs = []
    for device_id, creds in devices.items():
        lines = tmp / f"{device_id}.txt"
        lines.write_bytes(telemetry_lines(device_id, per_device, wave=wave))
        output = tmp / f"{device_id}.out"
        with lines.open("rb") as stdin, output.open("wb") as stdout:
            procs.append(
                (
                    device_id,
                    output,
                    subprocess.Popen(
                        [
                            "mosquitto_pub",
                            *(["-d"] if qos else []),
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
                        stdout=stdout,
                        stderr=subprocess.STDOUT,
                    ),
                )
            )
    taken = 0
    for device_id, output, proc in procs:
        status = proc.wait(timeout=600)
        text = output.read_bytes()
        acked = text.count(b" received PUBACK ") if qos else (per_device if status == 0 else 0)
        taken += acked
        if status != 0 or acked != per_device:
            tail = text[-500:].decode(errors="replace")
            print(
                f"mosquitto_pub for {device_id} exited {status}, {acked} of {per_device}"
                f" taken by the broker:\n{tail}",
                file=sys.stderr,
            )
    shutil.rmtree(tmp)
    return taken


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
