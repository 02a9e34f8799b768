"""SIGTERM (what systemd sends) and SIGINT stop the gateway cleanly.

A clean stop commits what was accepted and acknowledges it to the broker
before disconnecting, and exits 0. Proof that the acknowledgements went out:
after a restart the broker sends nothing again (no duplicate is screened),
and every message is stored once.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import grpc
import pytest
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role

from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import MosquittoBroker, device_client

DEVICE = "r101-env"
TOTAL = 3000


async def _duplicates(port: int, token: str) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = lan_pb2_grpc.LanServiceStub(channel)
        status = await stub.GetGatewayStatus(
            lan_pb2.GetGatewayStatusRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=5,
            wait_for_ready=True,
        )
    return status.rejected.get("duplicate", 0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_a_signal_stops_cleanly_and_acknowledges_what_was_committed(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str, sig: signal.Signals
) -> None:
    gw = mosquitto.add_gateway(hotel_id)
    dev = mosquitto.add_device(hotel_id, DEVICE)
    mosquitto.reload()
    config = tmp_path / "edge.toml"
    port = write_config(
        config,
        hotel_id=hotel_id,
        mosquitto=mosquitto,
        gateway=gw,
        devices={DEVICE: "environment_sensor"},
    )
    token = LocalTokens(tmp_path / "edge" / "staff-tokens.json").create("tester", Role.VIEWER)
    gateway = EdgeProcess(config)
    topic = codec.topic(hotel_id, DEVICE, Channel.TELEMETRY)
    base = int(time.time() * 1000) - TOTAL - 10

    def body(seq: int) -> bytes:
        return json.dumps({"v": 1, "ts": base + seq, "seq": seq, "metrics": {"t": 20}}).encode()

    gateway.start()
    try:
        await until(lambda: gateway.subscribed() >= 1, 30, "gateway subscribed")
        async with device_client(mosquitto, dev, DEVICE) as device:
            for seq in range(1, TOTAL + 1):
                await device.publish(topic, body(seq), qos=1)
                if seq == TOTAL // 2:
                    # Mid-stream: messages in flight, some committed, some not.
                    started = time.monotonic()
                    status = gateway.stop(sig)
                    took = time.monotonic() - started
                    assert status == 0, gateway.log_tail()
                    assert took < 10, f"stopping took {took:.1f} s"
                    assert gateway.logged("stopped") == 1
                    gateway.start()
            await until(lambda: gateway.committed(distinct=True) >= TOTAL, 60, "all stored")
            await device.publish(topic, body(TOTAL + 1), qos=1)  # a marker, after the rest
            await until(lambda: gateway.committed() >= TOTAL + 1, 60, "marker stored")
        duplicates = await _duplicates(port, token)
    finally:
        gateway.stop()
    assert duplicates == 0, "the broker sent again what the gateway had committed"
    assert gateway.committed() == gateway.committed(distinct=True) == TOTAL + 1
