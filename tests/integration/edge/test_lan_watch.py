"""WatchEvents says when the watcher is subscribed: its initial metadata carries
`bellhop-subscribed: 1` once the gateway put it on the event bus, so every event published
from that moment reaches it (the SDK's handover from the cloud counts from then)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bellhop.lan.v1 import lan_pb2
from bellhop_devices.messages import Channel
from bellhop_edge.core.model import LiveEvent, TelemetryPoint

from tests.integration.edge.conftest import FakeDevice, Harness

ENV = "r102-env"


def now_ms() -> int:
    return int(time.time() * 1000)


async def subscribed(call: Any) -> None:
    """Returns once the stream's initial metadata came, which must say it is subscribed."""
    metadata = await asyncio.wait_for(call.initial_metadata(), 5)
    assert ("bellhop-subscribed", "1") in list(metadata)


async def next_message(call: Any) -> lan_pb2.WatchEventsResponse:
    message = await asyncio.wait_for(call.read(), 5)
    assert isinstance(message, lan_pb2.WatchEventsResponse), message
    return message


async def test_an_event_published_right_after_the_metadata_is_delivered(
    harness: Harness,
) -> None:
    for attempt in range(20):  # the race, run again: any one miss fails the test
        call = harness.stub.WatchEvents(lan_pb2.WatchEventsRequest(), metadata=harness.viewer)
        try:
            await subscribed(call)
            point = TelemetryPoint(ENV, "temperature", now_ms(), 20.0 + attempt)
            harness.gateway.bus.publish(LiveEvent(point, "102"))  # no await in between
            message = await next_message(call)
            assert message.WhichOneof("event") == "telemetry"
            assert message.telemetry.value == 20.0 + attempt
        finally:
            call.cancel()
        await harness.wait_for(lambda: not harness.gateway.bus.active)


async def test_a_device_report_sent_right_after_the_metadata_is_delivered(
    harness: Harness,
) -> None:
    call = harness.stub.WatchEvents(
        lan_pb2.WatchEventsRequest(room_id="102"), metadata=harness.viewer
    )
    try:
        async with harness.device_client(ENV) as client:
            device = FakeDevice(harness.hotel_id, ENV, client)
            await subscribed(call)
            payload = {"v": 1, "ts": now_ms(), "seq": 1, "metrics": {"temperature": 21.5}}
            await device.send(Channel.TELEMETRY, payload)
            message = await next_message(call)
            while message.WhichOneof("event") != "telemetry":  # its connectivity first
                message = await next_message(call)
        assert message.telemetry.device_id == ENV
        assert message.telemetry.value == 21.5
    finally:
        call.cancel()
