"""What the broker kept for the gateway while it was away is stored, all of it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.core.hotel import DUPLICATE
from bellhop_edge.gateway import Gateway

from tests.integration.edge.conftest import device_client, gateway_config, wait_until
from tests.support.mosquitto import MosquittoBroker

# More than the broker's in-flight window (max_inflight_messages 1000): every
# message sent right after the reconnect must be acknowledged for the rest to come.
QUEUED = 2500


async def test_messages_queued_while_the_gateway_was_away_are_all_stored(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    gw_creds = mosquitto.add_gateway(hotel_id)
    creds = mosquitto.add_devices(hotel_id, ["r102-env"])["r102-env"]
    mosquitto.reload()
    config = gateway_config(tmp_path, hotel_id, mosquitto, gw_creds)
    async with Gateway(config) as gateway:  # the broker now keeps a session for it
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
    base = int(time.time() * 1000) - QUEUED
    topic = codec.topic(hotel_id, "r102-env", Channel.TELEMETRY)

    def body(seq: int) -> bytes:
        return json.dumps(
            {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"humidity": 40}}
        ).encode()

    async with device_client(mosquitto, hotel_id, "r102-env", creds) as device:
        for seq in range(1, QUEUED + 1):
            await device.publish(topic, body(seq), qos=1)
    async with Gateway(config) as gateway:
        await wait_until(lambda: gateway.hotel.accepted >= QUEUED, timeout=20)
        await gateway.writer.flush()  # every PUBACK is queued on the connection by now
        points = gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 2 * QUEUED)
        # A QoS 1 publish on the same connection, answered: the broker has read
        # the PUBACKs queued before it. (The queued messages come before the
        # subscriptions are confirmed, and the link publishes only after that.)
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        await gateway.link.publish(codec.topic(hotel_id, "r102-env", Channel.CMD), b"{}", 1)
    assert [p.ts for p in points] == [base + seq for seq in range(1, QUEUED + 1)]
    # Every one of them was acknowledged: none comes again on the next connection.
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        # The broker sends what it still holds for the session before anything
        # newer: once a new message is taken, nothing older is left to come.
        async with device_client(mosquitto, hotel_id, "r102-env", creds) as device:
            await device.publish(topic, body(QUEUED + 1), qos=1)
        await wait_until(lambda: gateway.hotel.accepted >= 1)
        assert gateway.hotel.rejected[DUPLICATE] == 0
        assert gateway.hotel.accepted == 1
