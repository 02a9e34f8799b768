"""A full disk: QoS 1 messages that cannot be stored are not acknowledged, and arrive later."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.gateway import Gateway

from tests.integration.edge.conftest import device_client, gateway_config, wait_until
from tests.support.mosquitto import MosquittoBroker
from tests.support.waiting import until


async def test_messages_refused_by_a_full_disk_are_stored_once_space_is_back(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    gw_creds = mosquitto.add_gateway(hotel_id)
    creds = mosquitto.add_devices(hotel_id, ["r102-env"])["r102-env"]
    mosquitto.reload()
    # The database may not grow past 2 MiB (as a disk of that size would).
    config = gateway_config(tmp_path, hotel_id, mosquitto, gw_creds, store={"max_size_mib": 2})
    topic = codec.topic(hotel_id, "r102-env", Channel.TELEMETRY)
    base = int(time.time() * 1000) - 100_000
    sent = 0
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        connects = gateway.link.connects
        # Something else fills the rest of the disk.
        other = sqlite3.connect(config.database_path, isolation_level=None)
        other.execute("CREATE TABLE ballast (b BLOB)")
        other.execute("INSERT INTO ballast VALUES (zeroblob(3 * 1024 * 1024))")
        async with device_client(mosquitto, hotel_id, "r102-env", creds) as device:

            async def publish() -> None:
                nonlocal sent
                sent += 1
                body = {"v": 1, "ts": base + sent, "seq": sent, "metrics": {"humidity": 40}}
                await device.publish(topic, json.dumps(body).encode(), qos=1)

            # One message at a time until a write fails: each is taken in
            # (accepted or redelivered later) before the next is sent.
            while gateway.writer.stats.failed == 0:
                await publish()
                await wait_until(
                    lambda: gateway.hotel.accepted >= sent or gateway.writer.stats.failed > 0,
                    timeout=10,
                )
            # A few more while the disk is full.
            for _ in range(5):
                await publish()
            # Not acknowledged: the gateway reconnects for the broker to send them again.
            await wait_until(lambda: gateway.link.drops > 0, timeout=10)
            other.execute("DROP TABLE ballast")  # space is back
            other.close()

            async def stored() -> list[Any] | None:
                await gateway.writer.flush()
                found = gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 10 * sent)
                return found if len(found) >= sent else None

            points = await until(stored, 30, "every reading stored", every=0.05)
            # The broker sends the session's messages again right after CONNACK, before the
            # link has its subscriptions confirmed and counts the connection: on a busy
            # machine they can all be stored first.
            await wait_until(lambda: gateway.link.connects > connects, timeout=10)
        assert gateway.writer.stats.failed > 0
    assert sorted(p.ts for p in points) == [base + i for i in range(1, sent + 1)]
