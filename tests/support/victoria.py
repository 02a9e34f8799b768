"""VictoriaMetrics as a real server speaking InfluxDB's v2 write API, for the sink's tests.

    with victoria_metrics(tmp_path) as vm:       # skips (fails on CI) without the binary
        ... write to vm.url ...
        vm.stop(); vm.start()                     # same port, same data
        samples = vm.samples("telemetry_.*")      # {(series labels, ts_ms): value}

Debian's `victoria-metrics` package: `/api/v2/write` takes influxdb-client's
writes (each field becomes the metric `<measurement>_<field>`, tags become
labels) and `/api/v1/export` gives every stored sample back.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from tests.support.mosquitto import PortTaken, free_port, wait_for_listener
from tests.support.waiting import eventually

__all__ = ["VICTORIA", "Sample", "VictoriaMetrics", "require_victoria", "victoria_metrics"]

VICTORIA: Final = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
HTTP_TIMEOUT_S: Final = 10.0

# (metric name, sorted (label, value) pairs without the name, timestamp in ms)
Sample = tuple[str, tuple[tuple[str, str], ...], int]


def require_victoria() -> None:
    """The binary is there; with CI=true a missing one fails the test, elsewhere it skips."""
    if os.path.exists(VICTORIA):
        return
    reason = "victoria-metrics is not installed (apt-get install victoria-metrics)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


class VictoriaMetrics:
    """One server on a free loopback port with its own data directory; stop and start keep both."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self._started = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "victoria.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and return once healthy; a port another process took first before the
        server's first start is given up for another (a restart keeps its port)."""
        for _ in range(3):
            try:
                self._start_once()
            except PortTaken:
                self.stop()
                if self._started:
                    raise
                self.port = free_port()
                continue
            self._started = True
            return
        self._start_once()

    def _start_once(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    VICTORIA,
                    f"-storageDataPath={self.workdir / 'data'}",
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    # What was just written is searchable at once, not 30 s later.
                    "-search.latencyOffset=0s",
                    "-search.disableCache",
                    "-retentionPeriod=100y",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert self.proc is not None
        wait_for_listener(self.proc, self.port, timeout=30)
        eventually(
            lambda: self._get("/health") == b"OK", 30, f"victoria-metrics healthy ({self.log})"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def samples(self, pattern: str) -> dict[Sample, list[float]]:
        """Every stored sample of the metrics whose name matches `pattern` (a regex), by
        series and timestamp, with each value stored (a rewrite stores one more)."""
        with contextlib.suppress(urllib.error.URLError):
            self._get("/internal/force_flush")
        query = urllib.parse.urlencode({"match[]": f'{{__name__=~"{pattern}"}}'})
        body = self._get(f"/api/v1/export?{query}") or b""
        found: dict[Sample, list[float]] = {}
        for text in body.splitlines():
            row = json.loads(text)
            labels = dict(row["metric"])
            name = labels.pop("__name__")
            key = tuple(sorted(labels.items()))
            for ts, value in zip(row["timestamps"], row["values"], strict=True):
                found.setdefault((name, key, int(ts)), []).append(float(value))
        return found

    def _get(self, path: str) -> bytes | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=HTTP_TIMEOUT_S) as answer:
                return bytes(answer.read())
        except (urllib.error.URLError, ConnectionError):
            return None


@contextlib.contextmanager
def victoria_metrics(workdir: Path) -> Iterator[VictoriaMetrics]:
    require_victoria()
    workdir.mkdir(parents=True, exist_ok=True)
    server = VictoriaMetrics(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
