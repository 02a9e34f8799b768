"""When the disk falls behind, ingest holds messages back; nothing accepted is lost."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path

import pytest
from bellhop_edge.config import load_config
from bellhop_edge.errors import Unavailable
from bellhop_edge.gateway import Gateway

from tests.integration.edge.conftest import gateway_config, wait_until
from tests.support.mosquitto import MosquittoBroker


async def test_a_congested_writer_holds_messages_back_and_loses_none(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    total = 3000
    gw_creds = mosquitto.add_gateway(hotel_id)
    creds = mosquitto.add_device(hotel_id, "r102-env")
    mosquitto.reload()
    # 16 writes in flight at most: the writer is "behind" after 8.
    config = gateway_config(tmp_path, hotel_id, mosquitto, gw_creds, store={"max_pending_ops": 16})
    base = int(time.time() * 1000) - total
    lines = b"".join(
        b'{"v":1,"ts":%d,"seq":%d,"metrics":{"humidity":40}}\n' % (base + i, i)
        for i in range(1, total + 1)
    )
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        publisher = await asyncio.create_subprocess_exec(
            "mosquitto_pub",
            *("-h", mosquitto.host, "-p", str(mosquitto.port)),
            *("-u", creds.username, "-P", creds.password, "-i", f"{hotel_id}-r102-env"),
            *("-q", "1", "-t", f"hotel/{hotel_id}/device/r102-env/telemetry", "-l"),
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(publisher.communicate(lines), 60)
        assert publisher.returncode == 0, err
        await wait_until(lambda: gateway.hotel.accepted >= total, timeout=30)
        await gateway.writer.flush()
        points = gateway.store.query_telemetry("r102-env", "humidity", 0, 2**62, 10 * total)
        held = gateway.delivery.stats.held
    assert held > 0, "the writer should have been congested"
    assert len(points) == total
    assert gateway.hotel.rejected["overloaded"] == 0


async def test_a_gateway_that_cannot_start_releases_what_it_opened(tmp_path: Path) -> None:
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
