"""The broker files the gateway generates, loaded by a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.provisioning import broker_files as broker

from tests.support.mosquitto import MosquittoBroker


def test_hash_format_matches_mosquitto_passwd(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(path), "alice", "secret"], check=True)
    reference = path.read_text().strip().split(":", 1)[1]
    assert broker.verify_password("secret", reference)
    assert not broker.verify_password("wrong", reference)
    ours = broker.hash_password("secret")
    assert ours.startswith("$7$101$")
    assert broker.verify_password("secret", ours)


async def test_anonymous_and_wrong_password_are_refused(
    mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    creds = mosquitto.add_gateway(hotel_id)
    mosquitto.reload()
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, timeout=5):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            mosquitto.host, mosquitto.port, username=creds.username, password="x", timeout=5
        ):
            pass
    async with aiomqtt.Client(
        mosquitto.host, mosquitto.port, username=creds.username, password=creds.password, timeout=5
    ):
        pass


async def _collect(client: aiomqtt.Client, seconds: float) -> list[str]:
    got: list[str] = []

    async def read() -> None:
        async for message in client.messages:
            got.append(message.topic.value)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return got


async def test_device_reaches_only_its_own_topics(
    mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    gw = mosquitto.add_gateway(hotel_id)
    a = mosquitto.add_device(hotel_id, "dev-a")
    b = mosquitto.add_device(hotel_id, "dev-b")
    mosquitto.reload()
    host, port = mosquitto.host, mosquitto.port
    async with (
        aiomqtt.Client(
            host, port, username=gw.username, password=gw.password, timeout=5
        ) as gateway,
        aiomqtt.Client(host, port, username=a.username, password=a.password, timeout=5) as dev_a,
        aiomqtt.Client(host, port, username=b.username, password=b.password, timeout=5) as dev_b,
    ):
        await gateway.subscribe(f"hotel/{hotel_id}/#", qos=1)
        await dev_b.subscribe("#", qos=1)  # a wildcard must not leak other devices' traffic
        # A publishes to its own topic (allowed) and pretends to be B (denied silently).
        await dev_a.publish(codec.topic(hotel_id, "dev-a", Channel.TELEMETRY), b"{}", qos=1)
        await dev_a.publish(codec.topic(hotel_id, "dev-b", Channel.TELEMETRY), b"{}", qos=1)
        # The gateway commands A; B must not see it. It also broadcasts.
        await gateway.publish(codec.topic(hotel_id, "dev-a", Channel.CMD), b"{}", qos=1)
        await gateway.publish(codec.broadcast_topic(hotel_id), b"{}", qos=1)
        seen_by_gateway, seen_by_b = await asyncio.gather(
            _collect(gateway, 1.0), _collect(dev_b, 1.0)
        )
    assert codec.topic(hotel_id, "dev-a", Channel.TELEMETRY) in seen_by_gateway
    assert codec.topic(hotel_id, "dev-b", Channel.TELEMETRY) not in seen_by_gateway
    assert seen_by_b == [codec.broadcast_topic(hotel_id)]


async def test_removed_device_cannot_connect_after_reload(
    mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    creds = mosquitto.add_device(hotel_id, "dev-gone")
    mosquitto.reload()
    async with aiomqtt.Client(
        mosquitto.host, mosquitto.port, username=creds.username, password=creds.password, timeout=5
    ):
        pass
    mosquitto.remove(creds.username)
    mosquitto.reload()
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            mosquitto.host,
            mosquitto.port,
            username=creds.username,
            password=creds.password,
            timeout=5,
        ):
            pass
