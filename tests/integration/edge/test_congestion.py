"""When the disk falls behind, ingest holds messages back; nothing accepted is lost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest
from bellhop_edge.app import Gateway
from bellhop_edge.config import EdgeConfig, load_config

from tests.integration.edge.conftest import wait_until


def _brokerless(tmp_path: Path, hotel_id: str, *, max_pending_ops: int) -> EdgeConfig:
    """One environment sensor and no broker: messages are fed the way the link hands them over."""
    return load_config(
        overrides={
            "hotel_id": hotel_id,
            "data_dir": str(tmp_path),
            "mqtt": {"port": 1, "reconnect_min_s": 5},
            "api": {"listen": "127.0.0.1:0"},
            "store": {"max_pending_ops": max_pending_ops},
            "rooms": [{"room_id": "101"}],
            "devices": [{"device_id": "env", "room_id": "101", "kind": "environment_sensor"}],
        }
    )


async def test_a_congested_writer_holds_messages_back_and_loses_none(tmp_path: Path) -> None:
    config = _brokerless(tmp_path, "h-congestion", max_pending_ops=64)
    total = 3000
    base = int(time.time() * 1000)
    async with Gateway(config) as gateway:
        for seq in range(1, total + 1):
            payload = {
                "v": 1,
                "ts": base + seq,
                "seq": seq,
                "metrics": {"humidity": 40},
            }
            gateway._on_message(  # the MQTT link's entry point
                aiomqtt.Message(
                    "hotel/h-congestion/device/env/telemetry",
                    json.dumps(payload).encode(),
                    1,
                    False,
                    seq,
                    None,
                )
            )
        assert gateway._backlog, "the writer should have been congested"
        await wait_until(lambda: gateway.hotel.accepted >= total, timeout=20)
        await gateway.writer.flush()
        points = gateway.store.query_telemetry("env", "humidity", 0, 2**62, 10 * total)
    assert len(points) == total
    assert gateway.hotel.rejected["overloaded"] == 0


async def test_a_gateway_that_cannot_start_releases_what_it_opened(tmp_path: Path) -> None:
    import socket

    import pytest
    from bellhop_edge.errors import Unavailable

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(
            overrides={
                "hotel_id": "h-start",
                "data_dir": str(tmp_path),
                "mqtt": {"port": 1},
                "api": {"listen": f"127.0.0.1:{port}"},
            }
        )
        gateway = Gateway(config)
        with pytest.raises(Unavailable, match="cannot listen"):
            await gateway.__aenter__()
    # The writer thread was stopped and the database closed: it opens again at once.
    async with Gateway(
        load_config(overrides={**config.model_dump(), "api": {"listen": "127.0.0.1:0"}})
    ):
        pass


@pytest.mark.usefixtures("frozen_heap")
async def test_draining_held_messages_leaves_the_event_loop_free(tmp_path: Path) -> None:
    config = _brokerless(tmp_path, "h-drain", max_pending_ops=100_000)
    total = 120_000
    base = int(time.time() * 1000) - total
    async with Gateway(config) as gateway:
        for seq in range(1, total + 1):
            gateway._on_message(
                aiomqtt.Message(
                    "hotel/h-drain/device/env/telemetry",
                    b'{"v":1,"ts":%d,"seq":%d,"metrics":{"humidity":40}}' % (base + seq, seq),
                    0,
                    False,
                    seq,
                    None,
                )
            )
        assert len(gateway._backlog) > 50_000, "the writer should have been congested"
        # Tens of thousands held: draining them must not stop the loop for long
        # (before it was sliced, for 327 ms on a quiet machine; what is left
        # is mostly the collector's full passes over the held messages).
        slowest = 0.0
        async with asyncio.timeout(60):
            while gateway.hotel.accepted < total:
                started = time.perf_counter()
                await asyncio.sleep(0.001)
                slowest = max(slowest, time.perf_counter() - started)
        await gateway.writer.flush()
        points = gateway.store.query_telemetry("env", "humidity", 0, 2**62, 2 * total)
    assert len(points) == total
    assert slowest < 0.25, f"the event loop was held for {slowest * 1000:.0f} ms"
