"""Guarantee 2 under many kills: every QoS 1 message stored once, in history and outbox.

`bellhop edge run` is SIGKILLed again and again while a device streams QoS 1
telemetry: mid-stream, right after start-up, and while it works through a
backlog the broker queued for it while it was down (the moments at which a
message can be committed and not yet acknowledged, so that the broker sends
it again). Afterwards every message must be in history exactly once and in
the outbox, which is what the cloud will receive, exactly once.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path

import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel

from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import MosquittoBroker, device_client

DEVICE = "r101-env"
TOTAL = 6000


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
    config = tmp_path / "edge.toml"
    write_config(
        config,
        hotel_id=hotel_id,
        mosquitto=mosquitto,
        gateway=gw,
        devices={DEVICE: "environment_sensor"},
    )
    gateway = EdgeProcess(config)
    rng = random.Random(hotel_id)  # the same kill points on every run of this test
    topic = codec.topic(hotel_id, DEVICE, Channel.TELEMETRY)
    base = int(time.time() * 1000) - TOTAL - 10

    def body(seq: int) -> bytes:
        return json.dumps(
            {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"t": seq % 50}}
        ).encode()

    gateway.start()
    try:
        async with device_client(mosquitto, dev, DEVICE) as device:
            seq = 0

            async def publish(count: int) -> None:
                nonlocal seq
                for _ in range(count):
                    seq += 1
                    await device.publish(topic, body(seq), qos=1)  # the broker has it

            # The gateway's session must exist before the first message so that
            # the broker queues for it.
            await until(lambda: gateway.subscribed() >= 1, 30, "gateway subscribed")
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

                await until(drained_to, 60, "draining")
                gateway.kill()
                gateway.start()
            await publish(TOTAL - seq)
            assert seq == TOTAL
            await until(lambda: gateway.committed(distinct=True) >= TOTAL, 60, "all stored")
            # Then a marker: once it is stored, the broker has nothing older left
            # to send again (a session's unacknowledged messages go first).
            await publish(1)
            await until(lambda: gateway.committed(distinct=True) > TOTAL, 60, "marker stored")
    finally:
        gateway.stop()
    history, history_distinct, outbox, outbox_distinct = _counts(gateway.database)
    report = (
        f"{gateway.kills} kills: history {history} rows ({history_distinct} distinct),"
        f" outbox {outbox} rows ({outbox_distinct} distinct), expected {TOTAL + 1}"
    )
    print(report)
    assert gateway.kills >= 10, report
    expected = TOTAL + 1  # and the marker
    assert (history_distinct, outbox_distinct) == (expected, expected), report + gateway.log_tail()
    assert (history, outbox) == (expected, expected), report
