"""Two relay processes on one PostgreSQL and one Redis, behind a proxy that plays the load
balancer: a node is killed with SIGKILL while remote commands are in flight, its gateway
moves to the other node, and every command runs exactly once."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.integration.edge.conftest import FakeDevice, device_client
from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.link_proxy import LinkProxy
from tests.support.mosquitto import MosquittoBroker
from tests.support.redis import REDIS_URL, require_redis
from tests.support.relay_process import (
    RelayProcess,
    bytecode_cache,
    enrol_gateway,
    postgres_database,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.timeout(150)]

DEVICE: Final = "r101-thermostat"
COMMANDS: Final = 40
BRIDGE: Final = """
[bridge]
reconnect_min_s = 0.05
reconnect_max_s = 0.5
connect_timeout_s = 2
"""


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def states(node: RelayProcess, hotel_id: str, headers: dict[str, str]) -> Counter[str]:
    """Where each command stands, as a node's REST API says."""
    with httpx.Client(base_url=node.url, timeout=10) as http:
        return Counter(
            http.get(f"/v1/hotels/{hotel_id}/commands/k-{i}", headers=headers).json()["state"]
            for i in range(COMMANDS)
        )


def ready(node: RelayProcess, hotel_id: str, headers: dict[str, str]) -> bool:
    """The node sees the gateway connected and knows its device."""
    with httpx.Client(base_url=node.url, timeout=10) as http:
        links = http.get(f"/v1/hotels/{hotel_id}/sync", headers=headers).json()
        device = http.get(f"/v1/hotels/{hotel_id}/devices/{DEVICE}", headers=headers)
    return any(link["connected"] for link in links) and device.status_code == 200


async def test_a_node_killed_with_commands_in_flight_loses_none_and_runs_none_twice(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    await require_redis()
    proxy = LinkProxy()
    await proxy.start()
    edge: EdgeProcess | None = None
    async with postgres_database("bellhop_nodes") as database_url:
        shared: dict[str, Any] = {
            "bus_backend": "redis",
            "rate_limit_backend": "redis",
            "redis_url": REDIS_URL,
            "bridge_public_url": proxy.url,  # gateways dial the load balancer
            "signing_key_path": str(tmp_path / "signing-key.pem"),  # one key for every node
        }
        node_a = RelayProcess(
            tmp_path / "a", database_url=database_url, settings={**shared, "node_id": "a"}
        )
        node_b = RelayProcess(
            tmp_path / "b", database_url=database_url, settings={**shared, "node_id": "b"}
        )
        try:
            proxy.target_port = node_a.bridge_port
            await asyncio.to_thread(node_a.start)
            await asyncio.to_thread(node_b.start)
            tenant = node_a.tenant()
            hotel_id, headers = tenant.hotel_id, tenant.headers
            gateway = mosquitto.add_gateway(hotel_id)
            creds = mosquitto.add_devices(hotel_id, [DEVICE])[DEVICE]
            mosquitto.reload()
            (tmp_path / "gateway").mkdir()
            config = tmp_path / "gateway" / "edge.toml"
            write_config(
                config,
                hotel_id=hotel_id,
                mosquitto=mosquitto,
                gateway=gateway,
                devices={DEVICE: "thermostat"},
                extra=BRIDGE,
            )
            await asyncio.to_thread(enrol_gateway, config, node_a, tenant.enrolment_token())
            edge = EdgeProcess(config)
            edge.start()
            async with device_client(mosquitto, hotel_id, DEVICE, creds) as client:
                device = FakeDevice(hotel_id, DEVICE, client)
                async with device.serving():
                    await until(lambda: ready(node_b, hotel_id, headers), 30, "gateway on A")
                    # Queued through node B; node A holds the bridge and sends them.
                    async with httpx.AsyncClient(base_url=node_b.url, timeout=10) as http:
                        for i in range(COMMANDS):
                            answer = await http.post(
                                f"/v1/hotels/{hotel_id}/devices/{DEVICE}/commands",
                                json={
                                    "name": "set_setpoint",
                                    "params": {"setpoint": 20 + i % 5},
                                    "command_id": f"k-{i}",
                                    "mode": "queue",
                                },
                                headers=headers,
                            )
                            assert answer.status_code == 202, answer.text
                    await until(lambda: len(device.commands) >= 1, 30, "the first command")
                    # Node A dies with commands sent and their results not all stored (the
                    # device has had most of them by now), so node B sends everything not
                    # answered again, and the gateway must not run any of them twice.
                    node_a.kill()
                    proxy.target_port = node_b.bridge_port  # the balancer takes A out
                    await until(
                        lambda: states(node_b, hotel_id, headers)["succeeded"] == COMMANDS,
                        60,
                        "every command succeeded, answered through node B",
                    )
            assert node_b.logged("bridge of") >= 1, node_b.tail()
            # Each ran once, however many times a node sent it.
            assert Counter(c["id"] for c in device.commands) == {
                f"k-{i}": 1 for i in range(COMMANDS)
            }
        finally:
            try:
                if edge is not None:
                    edge.stop(signal.SIGKILL)
            finally:
                node_a.close()
                node_b.close()
                await proxy.close()
