"""A running gateway on a real Mosquitto, real SQLite and real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import grpc
import pytest
from bellhop.lan.v1 import lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role
from bellhop_edge.config import EdgeConfig, load_config
from bellhop_edge.gateway import Gateway
from bellhop_edge.store import EdgeStore

from tests.support.mosquitto import Credentials, MosquittoBroker
from tests.support.waiting import until

DEVICES = {
    "r101-thermostat": "thermostat",
    "r101-door": "door_sensor",
    "r101-light": "light",
    "r102-env": "environment_sensor",
}


def gateway_config(
    tmp_path: Path, hotel_id: str, mosquitto: MosquittoBroker, creds: Credentials, **extra: Any
) -> EdgeConfig:
    overrides: dict[str, Any] = {
        "hotel_id": hotel_id,
        "data_dir": str(tmp_path / "edge"),
        "mqtt": {
            "host": mosquitto.host,
            "port": mosquitto.port,
            "username": creds.username,
            "password": creds.password,
            "reconnect_min_s": 0.05,
            "reconnect_max_s": 0.5,
        },
        "api": {"listen": "127.0.0.1:0"},
        "liveness": {"heartbeat_timeout_s": 2.0, "check_interval_s": 0.1},
        "store": {"batch_max_delay_ms": 2},
        "rooms": [{"room_id": "101", "floor": 1}, {"room_id": "102", "floor": 1}],
        "devices": [
            {"device_id": d, "room_id": d[1:4], "kind": kind} for d, kind in DEVICES.items()
        ],
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            overrides[key] = {**overrides.get(key, {}), **value}
        else:
            overrides[key] = value
    return load_config(overrides=overrides)


def device_client(
    mosquitto: MosquittoBroker, hotel_id: str, device_id: str, creds: Credentials, **kwargs: Any
) -> aiomqtt.Client:
    """A raw MQTT client with the device's own credentials."""
    return aiomqtt.Client(
        mosquitto.host,
        mosquitto.port,
        username=creds.username,
        password=creds.password,
        identifier=f"{hotel_id}-{device_id}",
        timeout=5,
        **kwargs,
    )


async def stop_task(task: asyncio.Task[Any], *, every: float = 0.1) -> None:
    """Cancel `task` until it is over.

    One cancel is not enough for a task that publishes with aiomqtt: on Python 3.11,
    `asyncio.wait_for` (aiomqtt's wait for the PUBACK) drops a cancellation that lands
    after the PUBACK but before the waiting task resumes. The task then goes back to
    reading messages, and an `await` of it never returns: under CPU load that window is
    wide enough to hang a test now and then (until its 60-second timeout).
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=every)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout` seconds."""
    await until(predicate, timeout, "the condition", every=0.01)


@dataclass
class FakeDevice:
    """A device under the test's control: raw MQTT with its own credentials.

    `async with device.serving():` answers commands until the block ends; the
    block starts only once the broker has confirmed the command subscription.
    """

    hotel_id: str
    device_id: str
    client: aiomqtt.Client
    commands: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None

    async def send(
        self,
        channel: Channel,
        payload: dict[str, Any] | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self.client.publish(
            codec.topic(self.hotel_id, self.device_id, channel), body, qos=qos, retain=retain
        )

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """Subscribe to commands (returns after the SUBACK), answer them inside the block."""
        topic = codec.topic(self.hotel_id, self.device_id, Channel.CMD)
        await self.client.subscribe(topic, qos=1, timeout=5)
        server = asyncio.create_task(self._answer_commands())
        try:
            yield
        finally:
            await stop_task(server)
            # A failure while answering (not the cancellation) fails the test.
            with contextlib.suppress(asyncio.CancelledError):
                await server

    async def _answer_commands(self) -> None:
        async for message in self.client.messages:
            command = json.loads(bytes(message.payload))
            self.commands.append(command)
            reply = {"id": command["id"], "status": "ok", "result": command.get("params", {})}
            if self.answer is not None:
                reply = self.answer(command)  # type: ignore[assignment]
            if reply is not None:
                await self.send(Channel.ACK, {"v": 1, **reply})


@dataclass
class Harness:
    gateway: Gateway
    mosquitto: MosquittoBroker
    hotel_id: str
    stub: lan_pb2_grpc.LanServiceAsyncStub
    channel: grpc.aio.Channel
    token: str
    viewer_token: str
    creds: dict[str, Credentials]

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    @property
    def viewer(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.viewer_token}"),)

    def device_client(self, device_id: str, **kwargs: Any) -> aiomqtt.Client:
        return device_client(
            self.mosquitto, self.hotel_id, device_id, self.creds[device_id], **kwargs
        )

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        await wait_until(predicate, timeout)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gateway(**overrides): configuration sections merged into the harness gateway's"
    )


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest, tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> AsyncIterator[Harness]:
    gw_creds = mosquitto.add_gateway(hotel_id)
    creds = mosquitto.add_devices(hotel_id, [*DEVICES, "stranger"])
    mosquitto.reload()
    marker = request.node.get_closest_marker("gateway")
    overrides: dict[str, Any] = marker.kwargs if marker is not None else {}
    config = gateway_config(tmp_path, hotel_id, mosquitto, gw_creds, **overrides)
    tokens = LocalTokens(config.data_dir / "staff-tokens.json")
    token = tokens.create("alice", Role.STAFF)
    viewer_token = tokens.create("victor", Role.VIEWER)
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gateway.api_port}")
        try:
            yield Harness(
                gateway,
                mosquitto,
                hotel_id,
                lan_pb2_grpc.LanServiceStub(channel),
                channel,
                token,
                viewer_token,
                creds,
            )
        finally:
            await channel.close()


# -- the edge store on a SQLite file of the test's own (test_store*.py) --------------------
@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.open(db_path) as opened:
        yield opened
