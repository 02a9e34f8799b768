"""Guarantee 2 at the edge: what the gateway accepted survives `kill -9`.

The gateway runs as a real process (`bellhop edge run`). A device publishes
QoS 1 telemetry without pause; the gateway is SIGKILLed mid-stream and
started again. Every message must end up stored exactly once: the gateway
acknowledges a QoS 1 message to the broker only after its commit, and its
persistent session makes the broker redeliver whatever was not acknowledged
and queue what arrives while it is down.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import grpc
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role

from tests.support.mosquitto import MosquittoBroker, free_port, wait_for_port

DEVICE = "r101-env"
TOTAL = 3000


def start_gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bellhop_cli.main", "edge", "run", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


async def stored_timestamps(port: int, token: str) -> list[int]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = lan_pb2_grpc.LanServiceStub(channel)
        reply = await stub.QueryTelemetry(
            lan_pb2.QueryTelemetryRequest(device_id=DEVICE, metric="temperature", limit=10_000),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
        )
    return [p.ts.ToMilliseconds() for p in reply.points]


async def wait_stored(port: int, token: str, ts: int, timeout: float) -> list[int]:
    """Poll the LAN API until the point at `ts` is stored; every stored timestamp."""
    async with asyncio.timeout(timeout):
        while ts not in (stamps := await stored_timestamps(port, token)):
            await asyncio.sleep(0.2)
    return stamps


async def wait_subscribed(port: int, token: str, timeout: float) -> None:
    """Until the gateway reports its broker link up (subscriptions confirmed)."""
    async with (
        asyncio.timeout(timeout),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        stub = lan_pb2_grpc.LanServiceStub(channel)
        auth = (("authorization", f"Bearer {token}"),)
        while True:
            status = await stub.GetGatewayStatus(
                lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=5
            )
            if status.broker_connected:
                return
            await asyncio.sleep(0.05)


async def test_sigkill_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    gw = mosquitto.add_gateway(hotel_id)
    dev = mosquitto.add_device(hotel_id, DEVICE)
    mosquitto.reload()
    api_port = free_port()
    data = tmp_path / "edge"
    config = tmp_path / "edge.toml"
    config.write_text(
        f'hotel_id = "{hotel_id}"\ndata_dir = "{data}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        f'username = "{gw.username}"\npassword = "{gw.password}"\nreconnect_min_s = 0.1\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
        '[[rooms]]\nroom_id = "101"\nfloor = 1\n'
        f'[[devices]]\ndevice_id = "{DEVICE}"\nroom_id = "101"\nkind = "environment_sensor"\n'
    )
    token = LocalTokens(data / "staff-tokens.json").create("tester", Role.VIEWER)
    log = tmp_path / "gateway.log"
    gateway = start_gateway(config, log)
    base = int(time.time() * 1000)
    topic = codec.topic(hotel_id, DEVICE, Channel.TELEMETRY)

    def telemetry(seq: int) -> bytes:
        payload = {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"temperature": 20 + seq % 10}}
        return json.dumps(payload).encode()

    try:
        wait_for_port("127.0.0.1", api_port, timeout=30)
        # From here on the broker keeps the gateway's session: nothing sent is lost.
        await wait_subscribed(api_port, token, timeout=30)
        async with aiomqtt.Client(
            mosquitto.host,
            mosquitto.port,
            username=dev.username,
            password=dev.password,
            identifier=DEVICE,
        ) as device:
            for seq in range(1, TOTAL + 1):
                await device.publish(topic, telemetry(seq), qos=1)
                if seq == TOTAL // 3:
                    gateway.send_signal(signal.SIGKILL)
                    gateway.wait(timeout=10)
                if seq == 2 * TOTAL // 3:
                    gateway = start_gateway(config, log)
            wait_for_port("127.0.0.1", api_port, timeout=30)
            await wait_stored(api_port, token, base + TOTAL, timeout=30)
            # One more, after everything: the broker sends the session's older
            # messages (redeliveries included) first, so once this one is
            # stored, no duplicate is still to come.
            await device.publish(topic, telemetry(TOTAL + 1), qos=1)
            stamps = await wait_stored(api_port, token, base + TOTAL + 1, timeout=30)
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    sent = [base + seq for seq in range(1, TOTAL + 2)]
    assert sorted(stamps) == sent, log.read_text()[-3000:]
    db = sqlite3.connect(data / "edge.db")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # What goes to the cloud: one outbox event per point, none twice.
    outbox = db.execute("SELECT point_ts FROM outbox WHERE kind = 3 ORDER BY seq").fetchall()
    db.close()
    assert sorted(ts for (ts,) in outbox) == sent
