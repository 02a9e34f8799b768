"""The ingest benchmark's accounting (bench/ingest.py), on a real Mosquitto and gateway.

Its `lost` must count only messages the broker acknowledged that are neither
stored nor still queued for the gateway. A loaded machine once made it report
1,480 lost at QoS 1: a wave was published on top of one the subscriber had not
taken, overflowing the broker's per-client queue, and the gateway was stopped
with messages still queued for it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiomqtt
import pytest

from tests.support.mosquitto import MosquittoBroker

# The benchmark is a script beside its helpers, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import ingest
from _load import publish_load, telemetry_lines

DEVICES = ["env-000", "env-001"]
PER_DEVICE = 100


def _keys(wave: int) -> set[ingest.Key]:
    """The (device, time) of every message of a wave."""
    return {
        (device, json.loads(line)["ts"])
        for device in DEVICES
        for line in telemetry_lines(device, PER_DEVICE, wave=wave).splitlines()
    }


async def test_no_wave_is_published_on_top_of_a_subscriber_that_stopped_taking(
    mosquitto: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "STALL_S", 0.5)
    devices = mosquitto.add_devices(ingest.HOTEL, DEVICES)
    mosquitto.reload()
    # A subscriber that never takes anything: with a wave the size of the
    # broker's queue, a second one would overflow it.
    taken = await ingest._waves(mosquitto, devices, PER_DEVICE, 3, lambda: 0, qos=1)
    assert taken.stalled
    assert taken.published == len(DEVICES) * PER_DEVICE  # one wave, every message acknowledged


async def test_what_the_gateway_left_queued_is_taken_off_the_broker_and_its_session_ended(
    mosquitto: MosquittoBroker,
) -> None:
    gateway = mosquitto.add_gateway(ingest.HOTEL)
    devices = mosquitto.add_devices(ingest.HOTEL, DEVICES)
    mosquitto.reload()
    # The gateway's persistent session, as a stopped gateway leaves it.
    async with aiomqtt.Client(
        mosquitto.host,
        mosquitto.port,
        username=gateway.username,
        password=gateway.password,
        identifier=gateway.username,
        clean_session=False,
    ) as client:
        await client.subscribe(f"hotel/{ingest.HOTEL}/device/+/telemetry", qos=1)
    published = await asyncio.to_thread(
        publish_load, mosquitto, ingest.HOTEL, devices, PER_DEVICE, qos=1
    )
    assert published == len(DEVICES) * PER_DEVICE
    assert await ingest.still_queued(mosquitto, gateway) == _keys(0)
    # Ended: what is published now is queued for nobody.
    await asyncio.to_thread(
        publish_load, mosquitto, ingest.HOTEL, devices, PER_DEVICE, qos=1, wave=1
    )
    assert await ingest.still_queued(mosquitto, gateway) == set()


async def test_a_gateway_run_stores_every_acknowledged_message_and_leaves_nothing_queued(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    gateway = mosquitto.add_gateway(ingest.HOTEL)
    floor = mosquitto.add_gateway(ingest.HOTEL, username=ingest.FLOOR_USER)
    devices = mosquitto.add_devices(ingest.HOTEL, DEVICES)
    mosquitto.reload()
    run = await ingest.gateway_run(mosquitto, gateway, devices, PER_DEVICE, 2, tmp_path, qos=1)
    assert (run.lost, run.queued, run.stalled) == (0, 0, False)
    assert run.rate > 0
    # The floor of the next round has an account of its own, and the gateway's
    # session is over: none of the floor's load is queued for the gateway.
    _, stalled = await ingest.floor(mosquitto, floor, devices, PER_DEVICE, 1, qos=1)
    assert not stalled
    assert await ingest.still_queued(mosquitto, gateway) == set()
