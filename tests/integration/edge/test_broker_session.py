"""The gateway's broker session: no one can take it over, and a broker crash keeps its queue."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.gateway import Gateway

from tests.integration.edge.conftest import (
    Harness,
    device_client,
    gateway_config,
    wait_until,
)
from tests.support.mosquitto import MosquittoBroker, require_mosquitto


def _telemetry(base: int, seq: int) -> bytes:
    return json.dumps({"v": 1, "ts": base + seq, "seq": seq, "metrics": {"humidity": 40}}).encode()


def _client(harness: Harness, device_id: str, identifier: str) -> aiomqtt.Client:
    creds = harness.creds[device_id]
    return aiomqtt.Client(
        harness.mosquitto.host,
        harness.mosquitto.port,
        username=creds.username,
        password=creds.password,
        identifier=identifier,
        timeout=5,
    )


@pytest.mark.parametrize(
    "claimed",
    ["gateway", "old-gateway-default", "other-device"],
    ids=["the-gateway-s-id", "the-old-default-id", "another-device-s-id"],
)
async def test_a_device_cannot_take_over_another_client_s_session(
    harness: Harness, claimed: str
) -> None:
    hotel_id, gateway = harness.hotel_id, harness.gateway
    claimed_id = {
        "gateway": f"gateway-{hotel_id}",
        "old-gateway-default": f"bellhop-gateway-{hotel_id}",
        "other-device": "r102-env",
    }[claimed]
    base = int(time.time() * 1000) - 1000
    topic = codec.topic(hotel_id, "r102-env", Channel.TELEMETRY)
    connects = gateway.link.connects
    before = harness.mosquitto.logged("as stranger")
    async with _client(harness, "r102-env", "r102-env") as victim:
        for attempt in range(5):
            # A device's own credentials, another client's id: the broker gives
            # it its own username as id instead, so nothing is taken over.
            async with _client(harness, "stranger", claimed_id):
                pass
            for seq in range(attempt * 60 + 1, attempt * 60 + 61):
                await victim.publish(topic, _telemetry(base, seq), qos=1)
        await wait_until(lambda: gateway.hotel.accepted >= 300, timeout=20)
    assert harness.mosquitto.logged("as stranger") == before + 5
    assert gateway.link.connects == connects, "the gateway's connection was taken over"
    await gateway.writer.flush()
    points = gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 1000)
    assert len(points) == 300


async def test_messages_queued_for_the_gateway_survive_a_broker_crash(
    tmp_path: Path, hotel_id: str
) -> None:
    require_mosquitto()
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = MosquittoBroker(workdir, persistence=True)
    broker.start()
    try:
        gw_creds = broker.add_gateway(hotel_id)
        creds = broker.add_device(hotel_id, "r102-env")
        broker.reload()
        config = gateway_config(tmp_path, hotel_id, broker, gw_creds)
        async with Gateway(config) as gateway:  # the broker now keeps a session for it
            await asyncio.wait_for(gateway.link.connected.wait(), 10)
        base = int(time.time() * 1000) - 1000
        topic = codec.topic(hotel_id, "r102-env", Channel.TELEMETRY)
        async with device_client(broker, hotel_id, "r102-env", creds) as device:
            for seq in range(1, 501):
                await device.publish(topic, _telemetry(base, seq), qos=1)
        # Accepted by the broker (PUBACKed to the device); a save begun after
        # this has them. (Two: the first line read may be of a save that began
        # before the last PUBACK and reached the log file late.)
        saves = broker.logged("Saving in-memory database")
        broker.wait_logged("Saving in-memory database", saves + 2, timeout=10)
        broker.stop(kill=True)
        broker.start()
        async with Gateway(config) as gateway:
            await wait_until(lambda: gateway.hotel.accepted >= 500, timeout=60)
            await gateway.writer.flush()
            points = gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 1000)
    finally:
        broker.stop()
    assert [p.ts for p in points] == [base + seq for seq in range(1, 501)]


async def test_the_broker_refuses_a_client_without_a_username(
    mosquitto: MosquittoBroker,
) -> None:
    client = aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="anonymous", timeout=5)
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass
