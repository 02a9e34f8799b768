"""What the writer reported committed survives a kill -9 of the process."""

from __future__ import annotations

import select
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bellhop_edge.store import EdgeStore, Synchronous

T0 = 1_800_000_000_000

# The child writes two points per message as fast as it can and prints the
# index of the last message after every flush, i.e. once it is committed.
CHILD = f"""
import asyncio, sys
from pathlib import Path
from bellhop_edge.core.model import TelemetryPoint
from bellhop_edge.core.ops import PutTelemetry
from bellhop_edge.store import StoreWriter, Synchronous

async def main(path: str, device: str, sync: str) -> None:
    async with StoreWriter(Path(path), synchronous=Synchronous(sync)) as writer:
        i = 0
        while True:
            for _ in range(250):
                writer.submit(PutTelemetry((
                    TelemetryPoint(device, "temperature", {T0} + i, float(i)),
                    TelemetryPoint(device, "humidity", {T0} + i, 50.0),
                )))
                i += 1
            await writer.flush()
            print(i - 1, flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def _read_committed(proc: subprocess.Popen[str], lines_wanted: int, timeout: float) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    last, lines = -1, 0
    while lines < lines_wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"the writer child reported only {lines} commits in {timeout}s")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if ready:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the writer child exited early with {proc.wait(5)}")
            last, lines = int(line), lines + 1
    return last


@pytest.mark.parametrize("sync", [Synchronous.NORMAL, Synchronous.FULL])
def test_committed_rows_survive_sigkill_mid_stream(
    tmp_path: Path, test_name: str, sync: Synchronous
) -> None:
    path = tmp_path / "edge.db"
    device = f"{test_name}-env"
    EdgeStore.open(path).close()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), device, sync.value],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    with proc:
        try:
            committed = _read_committed(proc, lines_wanted=20, timeout=30)
            proc.send_signal(signal.SIGKILL)  # while it keeps writing
        finally:
            proc.kill()
            proc.wait(10)
    # A commit printed after our last read is fine; missing one we saw is not.

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with EdgeStore.open(path) as store:
        got = store.query_telemetry(device, "temperature", T0, T0 + 10**9, limit=10**9)
        stored = [p.ts - T0 for p in got]
        assert stored[: committed + 1] == list(range(committed + 1))
        assert len(stored) >= committed + 1
        # The outbox holds one event per stored point, with no gap in sequence.
        n_points = 2 * len(stored)
        assert store.outbox_last_seq() == n_points
        seqs = [e.seq for e in store.outbox_after(0, limit=n_points + 1)]
        assert seqs == list(range(1, n_points + 1))
