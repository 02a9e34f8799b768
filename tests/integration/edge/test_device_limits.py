"""A device payload is at most the protocol's 4,096 bytes, as the gateway enforces it."""

from __future__ import annotations

import time

from bellhop_devices.messages import Channel

from tests.integration.edge.conftest import FakeDevice, Harness


def padded(ts: int, seq: int, size: int) -> bytes:
    head = b'{"v":1,"ts":%d,"seq":%d,"metrics":{"humidity":40}' % (ts, seq)
    return head + b" " * (size - len(head) - 1) + b"}"


async def test_payloads_past_4096_bytes_are_refused_and_counted(harness: Harness) -> None:
    base = int(time.time() * 1000)
    hotel = harness.gateway.hotel
    async with harness.device_client("r102-env") as client:
        device = FakeDevice(harness.hotel_id, "r102-env", client)
        await device.send(Channel.TELEMETRY, padded(base + 1, 1, 4874))  # stored before
        await device.send(Channel.TELEMETRY, padded(base + 2, 2, 4097))
        await device.send(Channel.TELEMETRY, padded(base + 3, 3, 4096))  # at the limit
        await device.send(Channel.TELEMETRY, padded(base + 4, 4, 100))  # a marker, last
        await harness.wait_for(lambda: hotel.accepted >= 2)
    await harness.gateway.writer.flush()
    points = harness.gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 10)
    assert [p.ts for p in points] == [base + 3, base + 4]
    assert hotel.rejected["too_large"] == 2
