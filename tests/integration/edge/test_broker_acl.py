"""The broker files the gateway generates, loaded by a real Mosquitto."""

from __future__ import annotations

import os
import signal
import subprocess
from functools import partial
from pathlib import Path

import aiomqtt
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.provisioning import broker_files as broker

from tests.integration.edge.broker_helpers import (
    collect_until,
    connect_error,
    subscribe,
    wait_accepted,
    wait_refused,
)
from tests.support.mosquitto import Credentials, MosquittoBroker


def reload(mosquitto: MosquittoBroker) -> None:
    """Only the signal (`MosquittoBroker.reload` adds a fixed pause): tests wait for its effect."""
    os.kill(mosquitto.pid, signal.SIGHUP)


def client(mosquitto: MosquittoBroker, creds: Credentials | None) -> aiomqtt.Client:
    """Plain MQTT with `creds`, or anonymous."""
    return aiomqtt.Client(
        mosquitto.host,
        mosquitto.port,
        username=creds.username if creds else None,
        password=creds.password if creds else None,
        timeout=5,
    )


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
    reload(mosquitto)
    await wait_accepted(lambda: client(mosquitto, creds))
    assert "not authorized" in (await connect_error(client(mosquitto, None))).lower()
    wrong = Credentials(creds.username, "x")
    assert "not authorized" in (await connect_error(client(mosquitto, wrong))).lower()


async def test_device_reaches_only_its_own_topics(
    mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    gw = mosquitto.add_gateway(hotel_id)
    a = mosquitto.add_device(hotel_id, "dev-a")
    b = mosquitto.add_device(hotel_id, "dev-b")
    reload(mosquitto)
    for creds in (gw, a, b):
        await wait_accepted(partial(client, mosquitto, creds))
    broadcast = codec.broadcast_topic(hotel_id)
    async with (
        client(mosquitto, gw) as gateway,
        client(mosquitto, a) as dev_a,
        client(mosquitto, b) as dev_b,
    ):
        await subscribe(gateway, f"hotel/{hotel_id}/#")
        await subscribe(dev_b, "#")  # a wildcard must not leak other devices' traffic
        # A publishes to its own topic (allowed) and pretends to be B (denied silently).
        await dev_a.publish(codec.topic(hotel_id, "dev-a", Channel.TELEMETRY), b"{}", qos=1)
        await dev_a.publish(codec.topic(hotel_id, "dev-b", Channel.TELEMETRY), b"{}", qos=1)
        # The gateway commands A; B must not see it. Its broadcast, last, is the marker.
        await gateway.publish(codec.topic(hotel_id, "dev-a", Channel.CMD), b"{}", qos=1)
        await gateway.publish(broadcast, b"{}", qos=1)
        seen_by_gateway = await collect_until(gateway, broadcast)
        seen_by_b = await collect_until(dev_b, broadcast)
    assert codec.topic(hotel_id, "dev-a", Channel.TELEMETRY) in seen_by_gateway
    assert codec.topic(hotel_id, "dev-b", Channel.TELEMETRY) not in seen_by_gateway
    assert seen_by_b == [broadcast]


async def test_removed_device_cannot_connect_after_reload(
    mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    creds = mosquitto.add_device(hotel_id, "dev-gone")
    reload(mosquitto)
    await wait_accepted(lambda: client(mosquitto, creds))
    mosquitto.remove(creds.username)
    reload(mosquitto)
    await wait_refused(lambda: client(mosquitto, creds), "not authorized")
