"""Two relay nodes on one PostgreSQL and one Redis: a REST call on one node reaches a
gateway whose bridge the other holds, and a node's death loses no command and runs none
twice."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bellhop_cloud.app import create_app
from bellhop_cloud.config import BusBackend, RateLimitBackend, RelayConfig
from bellhop_cloud.relay import Relay
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import EdgeSite, bridge_server, cloud_hotel, until
from tests.cloud.support import Api, expect
from tests.support.mosquitto import MosquittoBroker
from tests.support.redis import REDIS_URL, require_redis

pytestmark = [
    pytest.mark.redis,
    pytest.mark.parametrize(
        "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
    ),
]
SETPOINT = {"name": "set_setpoint", "params": {"setpoint_c": 21.5}}


@contextlib.asynccontextmanager
async def node(config: RelayConfig, name: str) -> AsyncIterator[Relay]:
    relay = await Relay.open(config.model_copy(update={"node_id": name}))
    try:
        async with relay.downlink.running():
            yield relay
    finally:
        await relay.close()


@contextlib.asynccontextmanager
async def rest(relay: Relay, test_name: str) -> AsyncIterator[Api]:
    transport = httpx.ASGITransport(app=create_app(relay.config, relay=relay))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as http:
        yield Api(http, relay, test_name)


@pytest.fixture
async def shared(relay_config: RelayConfig) -> RelayConfig:
    await require_redis()
    return relay_config.model_copy(
        update={
            "bus_backend": BusBackend.REDIS,
            "rate_limit_backend": RateLimitBackend.REDIS,
            "redis_url": REDIS_URL,
        }
    )


async def test_a_command_sent_to_one_node_runs_on_a_gateway_held_by_another(
    shared: RelayConfig, tmp_path: Path, mosquitto: MosquittoBroker, test_name: str
) -> None:
    async with (
        node(shared, "node-a") as node_a,
        node(shared, "node-b") as node_b,
        rest(node_b, test_name) as api_b,
    ):
        hotel = await cloud_hotel(api_b)
        site = EdgeSite(tmp_path, mosquitto, hotel)
        async with (
            bridge_server(node_a) as bridge_a,
            Gateway(site.config(bridge_a.url)),
            site.device("r101-thermostat") as device,
            device.serving(),
        ):
            await hotel.online("r101-thermostat")
            answer = await api_b.http.post(
                f"/v1/hotels/{hotel.hotel_id}/devices/r101-thermostat/commands",
                json={**SETPOINT, "command_id": "across"},
                headers=hotel.owner.headers,
            )
            assert expect(answer, 200)["state"] == "succeeded"
            assert node_a.downlink.sent == 1  # node A sent it; node B only took the request
            assert node_b.downlink.sent == 0
        assert [c["id"] for c in device.commands] == ["across"]


async def test_a_dead_nodes_gateway_moves_and_no_command_is_lost_or_run_twice(
    shared: RelayConfig, tmp_path: Path, mosquitto: MosquittoBroker, test_name: str
) -> None:
    async with (
        node(shared, "node-a") as node_a,
        node(shared, "node-b") as node_b,
        rest(node_b, test_name) as api_b,
    ):
        hotel = await cloud_hotel(api_b)
        site = EdgeSite(tmp_path, mosquitto, hotel)
        url = f"/v1/hotels/{hotel.hotel_id}/devices/r101-thermostat/commands"
        async with site.device("r101-thermostat") as device:
            device.answer = lambda command: None  # it acts, but its acknowledgement is lost
            async with device.serving(), contextlib.AsyncExitStack() as node_a_bridge:
                bridge_a = await node_a_bridge.enter_async_context(bridge_server(node_a))
                async with Gateway(site.config(bridge_a.url)):
                    await hotel.online("r101-thermostat")
                    # Sent by node A; the device has it, no answer yet.
                    body: dict[str, Any] = {**SETPOINT, "command_id": "in-flight"}
                    body |= {"mode": "queue", "timeout_s": 3}
                    expect(await api_b.http.post(url, json=body, headers=hotel.owner.headers), 202)
                    await until(lambda: bool(device.commands))
                    assert [c["id"] for c in device.commands] == ["in-flight"]
                    await node_a_bridge.aclose()  # node A dies with the command unanswered
                    # Meanwhile a manager queues another on node B.
                    body = {**SETPOINT, "command_id": "while-away", "mode": "queue"}
                    expect(await api_b.http.post(url, json=body, headers=hotel.owner.headers), 202)
                    device.answer = None  # from now on the device answers
                    # The gateway comes back through the load balancer: to node B.
                    async with bridge_server(node_b, bridge_a.port):
                        done = await hotel.command("while-away", "succeeded")
                        assert done["result"] == {"setpoint_c": 21.5}
                        first = await hotel.command("in-flight", "timed_out")
                        assert first["error"]
                    # Node B sent both: the one queued while away, and the one node A
                    # had sent and had no answer for.
                    assert node_b.downlink.sent == 2
        # Node B sent both again (everything not done); the device ran each once.
        assert sorted(c["id"] for c in device.commands) == ["in-flight", "while-away"]
