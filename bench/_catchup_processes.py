"""P5's processes (bench/catchup.py): the relay that stops and starts again, the CPU time
each side spends, and the bounded waits on all of them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import psutil
from _procs import bytecode_cached, pg_backends
from _remote_sites import Relay

# Bounds on every wait (seconds).
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
HTTP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.002


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the processes this benchmark starts, their bytecode cached (the
    relay starts twice per store)."""
    return bytecode_cached({**os.environ, **extra})


def halt(process: subprocess.Popen[bytes] | None, how: signal.Signals) -> None:
    """Send `how` to `process` if it still runs and wait for it; killed if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


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


# Keyword-only, so that the node's name and settings (P3's, unused here) can default.
@dataclass(kw_only=True)
class RelayProcess(Relay):
    """`bellhop cloud run` on fixed ports, so that it can stop and start again.

    P3's relay node (its ports, log, liveness and readiness), started with this
    benchmark's settings and, with --profile, under cProfile.
    """

    name: str = "relay"
    settings: dict[str, str] = field(default_factory=dict)
    database_url: str
    window_events: int
    window_bytes: int

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

    def stop(self) -> None:
        process, self.process = self.process, None
        # A clean stop, as SIGTERM, that also ends in a normal interpreter exit with
        # older relays (uvicorn raised the signal again after its shutdown): a profiled
        # relay still writes its profile.
        halt(process, signal.SIGINT)


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
