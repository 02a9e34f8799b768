"""`bellhop edge run` as a real process, for the fault tests (kill -9, SIGTERM)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.support import waiting
from tests.support.mosquitto import Credentials, MosquittoBroker, free_port


def write_config(
    path: Path,
    *,
    hotel_id: str,
    mosquitto: MosquittoBroker,
    gateway: Credentials,
    devices: dict[str, str],
    extra: str = "",
) -> int:
    """A gateway config with one room ("101") and `devices` (id -> kind); returns the API port."""
    port = free_port()
    lines = [
        f'hotel_id = "{hotel_id}"',
        f'data_dir = "{path.parent / "edge"}"',
        "[mqtt]",
        f'host = "{mosquitto.host}"',
        f"port = {mosquitto.port}",
        f'username = "{gateway.username}"',
        f'password = "{gateway.password}"',
        "reconnect_min_s = 0.05",
        "reconnect_max_s = 0.2",
        "[api]",
        f'listen = "127.0.0.1:{port}"',
        "[[rooms]]",
        'room_id = "101"',
        "floor = 1",
    ]
    for device_id, kind in devices.items():
        lines += [
            "[[devices]]",
            f'device_id = "{device_id}"',
            'room_id = "101"',
            f'kind = "{kind}"',
        ]
    path.write_text("\n".join(lines) + "\n" + extra)
    return port


class EdgeProcess:
    """One gateway process at a time, and what it has committed so far."""

    def __init__(self, config: Path) -> None:
        self._config = config
        self.database = config.parent / "edge" / "edge.db"
        self.log = config.parent / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "bellhop_cli.main", "edge", "run", "--config", str(self._config)),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def committed(self, *, distinct: bool = False) -> int:
        """Telemetry events in the outbox: what the gateway has committed."""
        if not self.database.exists():
            return 0
        what = "count(DISTINCT point_ts)" if distinct else "count(*)"
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=5)
        try:
            sql = f"SELECT {what} FROM outbox WHERE kind = 3"
            return int(db.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0
        finally:
            db.close()

    def logged(self, text: str) -> int:
        """How many times `text` is in the log (all runs)."""
        return self.log.read_text().count(text) if self.log.exists() else 0

    def subscribed(self) -> int:
        """Subscriptions made, over all runs ("connected to broker" is logged after them)."""
        return self.logged("connected to broker")

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 5 ms; TimeoutError naming `what` after `timeout` s."""
    await waiting.until(predicate, timeout, what, every=0.005)
