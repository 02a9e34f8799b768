"""Guarantee 2 under many kills: every QoS 1 message stored once, in history and outbox.

`bellhop edge run` is SIGKILLed again and again while a device streams QoS 1
telemetry: mid-stream, right after start-up, and while it works through a
backlog the broker queued for it while it was down (the moments at which a
message can be committed and not yet acknowledged, so that the broker sends
it again). Afterwards every message must be in history exactly once and in
the outbox, which is what the cloud will receive, exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel

from tests.support.mosquitto import MosquittoBroker, free_port

DEVICE = "r101-env"
TOTAL = 6000


def _config(
    tmp_path: Path, hotel_id: str, mosquitto: MosquittoBroker, username: str, password: str
) -> Path:
    config = tmp_path / "edge.toml"
    config.write_text(
        f'hotel_id = "{hotel_id}"\ndata_dir = "{tmp_path / "edge"}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'username = "{username}"\npassword = "{password}"\n'
        "reconnect_min_s = 0.05\nreconnect_max_s = 0.2\n"
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n'
        '[[rooms]]\nroom_id = "101"\nfloor = 1\n'
        f'[[devices]]\ndevice_id = "{DEVICE}"\nroom_id = "101"\nkind = "environment_sensor"\n'
    )
    return config


class Gateway:
    """`bellhop edge run` as a process, and what it has committed so far."""

    def __init__(self, config: Path, database: Path, log: Path) -> None:
        self._config = config
        self._database = database
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        with self._log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bellhop_cli.main",
                    "edge",
                    "run",
                    "--config",
                    str(self._config),
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

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=30)

    def committed(self, *, distinct: bool = False) -> int:
        """Telemetry events in the outbox: what the gateway has committed."""
        if not self._database.exists():
            return 0
        what = "count(DISTINCT point_ts)" if distinct else "count(*)"
        db = sqlite3.connect(f"file:{self._database}?mode=ro", uri=True, timeout=5)
        try:
            sql = f"SELECT {what} FROM outbox WHERE kind = 3"
            return int(db.execute(sql).fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0
        finally:
            db.close()

    def subscribed(self) -> int:
        """How many times a gateway has subscribed ("connected to broker" is logged after)."""
        return self._log.read_text().count("connected to broker") if self._log.exists() else 0

    def log_tail(self) -> str:
        return self._log.read_text()[-4000:]


async def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.005)


def _counts(database: Path) -> tuple[int, int, int, int]:
    """(history rows, distinct history times, outbox rows, distinct outbox times)."""
    db = sqlite3.connect(database)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        history = db.execute(
            "SELECT count(*), count(DISTINCT ts) FROM ("
            " SELECT ts FROM telemetry_recent UNION ALL SELECT ts FROM telemetry)"
        ).fetchone()
        outbox = db.execute(
            "SELECT count(*), count(DISTINCT point_ts) FROM outbox WHERE kind = 3"
        ).fetchone()
    finally:
        db.close()
    return int(history[0]), int(history[1]), int(outbox[0]), int(outbox[1])


@pytest.mark.timeout(240)
async def test_many_kills_store_and_send_every_message_exactly_once(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    gw = mosquitto.add_gateway(hotel_id)
    dev = mosquitto.add_device(hotel_id, DEVICE)
    mosquitto.reload()
    config = _config(tmp_path, hotel_id, mosquitto, gw.username, gw.password)
    gateway = Gateway(config, tmp_path / "edge" / "edge.db", tmp_path / "gateway.log")
    rng = random.Random(hotel_id)  # the same kill points on every run of this test
    topic = codec.topic(hotel_id, DEVICE, Channel.TELEMETRY)
    base = int(time.time() * 1000) - TOTAL - 10

    def body(seq: int) -> bytes:
        return json.dumps(
            {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"t": seq % 50}}
        ).encode()

    gateway.start()
    try:
        async with aiomqtt.Client(
            mosquitto.host,
            mosquitto.port,
            username=dev.username,
            password=dev.password,
            identifier=DEVICE,
            timeout=10,
        ) as device:
            seq = 0

            async def publish(count: int) -> None:
                nonlocal seq
                for _ in range(count):
                    seq += 1
                    await device.publish(topic, body(seq), qos=1)  # the broker has it

            # The gateway's session must exist before the first message so that
            # the broker queues for it.
            await _until(lambda: gateway.subscribed() >= 1, 30, "gateway subscribed")
            while seq < TOTAL - 600:
                # 1. Mid-stream, at a random moment.
                await publish(rng.randint(50, 400))
                gateway.kill()
                gateway.start()
                # 2. Away while the broker queues a backlog, then killed while draining it.
                await publish(rng.randint(300, 900))
                gateway.kill()
                queued_from = gateway.committed()
                gateway.start()
                target = queued_from + rng.randint(1, 300)

                def drained_to(t: int = target) -> bool:
                    return gateway.committed() >= t

                await _until(drained_to, 60, "draining")
                gateway.kill()
                gateway.start()
            await publish(TOTAL - seq)
            assert seq == TOTAL
            await _until(lambda: gateway.committed(distinct=True) >= TOTAL, 60, "all stored")
            # Then a marker: once it is stored, the broker has nothing older left
            # to send again (a session's unacknowledged messages go first).
            await publish(1)
            await _until(lambda: gateway.committed(distinct=True) > TOTAL, 60, "marker stored")
    finally:
        gateway.stop()
    history, history_distinct, outbox, outbox_distinct = _counts(tmp_path / "edge" / "edge.db")
    report = (
        f"{gateway.kills} kills: history {history} rows ({history_distinct} distinct),"
        f" outbox {outbox} rows ({outbox_distinct} distinct), expected {TOTAL + 1}"
    )
    print(report)
    assert gateway.kills >= 10, report
    expected = TOTAL + 1  # and the marker
    assert (history_distinct, outbox_distinct) == (expected, expected), report + gateway.log_tail()
    assert (history, outbox) == (expected, expected), report
