"""A burst of telemetry from a fast publisher: every message is stored and staff are still served."""

from __future__ import annotations

import asyncio
import subprocess
import time

from bellhop.lan.v1 import lan_pb2

from tests.integration.edge.conftest import Harness

BURST = 30_000


def _lines(count: int) -> bytes:
    base = int(time.time() * 1000) - count
    return b"".join(
        b'{"v":1,"ts":%d,"seq":%d,"metrics":{"temperature":21.5,"humidity":40}}\n' % (base + i, i)
        for i in range(1, count + 1)
    )


async def test_a_burst_is_stored_whole_while_the_lan_api_keeps_answering(
    harness: Harness,
) -> None:
    creds = harness.creds["r102-env"]
    publisher = await asyncio.create_subprocess_exec(
        "mosquitto_pub",
        "-h",
        harness.mosquitto.host,
        "-p",
        str(harness.mosquitto.port),
        "-u",
        creds.username,
        "-P",
        creds.password,
        "-i",
        f"{harness.hotel_id}-r102-env",
        "-q",
        "1",
        "-t",
        f"hotel/{harness.hotel_id}/device/r102-env/telemetry",
        "-l",
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    hotel = harness.gateway.hotel
    before = hotel.accepted
    assert publisher.stdin is not None
    publisher.stdin.write(_lines(BURST))
    await publisher.stdin.drain()
    publisher.stdin.close()

    # Staff calls made while the burst is being taken are answered (each
    # within its deadline): reading the broker socket does not starve the API.
    # How fast they are answered is bench/responsiveness.py's figure.
    answered_during = 0
    async with asyncio.timeout(60):
        while hotel.accepted - before < BURST:
            status = await harness.stub.GetGatewayStatus(
                lan_pb2.GetGatewayStatusRequest(), metadata=harness.auth, timeout=5
            )
            if status.accepted - before < BURST:
                answered_during += 1
            await asyncio.sleep(0.005)  # the polling interval of this loop
        assert await publisher.wait() == 0
    await harness.gateway.writer.flush()
    assert answered_during >= 3, "the burst was taken before the API was called during it"
    points = harness.gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 2 * BURST)
    assert len(points) == BURST
