"""A real Mosquitto for the device simulator's tests, plus an edge-side listener."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import DeviceMessage
from bellhop_devices.sim import Broker

MOSQUITTO = Path("/usr/sbin/mosquitto")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"mosquitto did not listen on {port} within {timeout_s} s")


def free_port() -> int:
    return _free_port()


@contextlib.contextmanager
def run_mosquitto(workdir: Path, port: int, extra_conf: str = "") -> Iterator[Broker]:
    """A Mosquitto listening on 127.0.0.1:`port`, killed on exit."""
    if not MOSQUITTO.exists():
        pytest.fail(f"{MOSQUITTO} is missing: install the mosquitto package")
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\npersistence false\nmax_queued_messages 10000\n"
        f"set_tcp_nodelay true\n{extra_conf}",
        encoding="utf-8",
    )
    with (workdir / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([str(MOSQUITTO), "-c", str(conf)], stdout=log, stderr=log)
        try:
            _wait_listening(port, proc)
            yield Broker(host="127.0.0.1", port=port)
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto on a free loopback port, anonymous clients allowed, no persistence."""
    with run_mosquitto(
        tmp_path_factory.mktemp("mosquitto"), _free_port(), "allow_anonymous true\n"
    ) as running:
        yield running


@pytest.fixture
def hotel_id(request: pytest.FixtureRequest) -> str:
    """A hotel id unique to the test, so tests sharing the broker never collide."""
    name = re.sub(r"[^a-z0-9_-]+", "-", request.node.name.lower()).strip("-")
    return name[-64:].lstrip("-_")


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    message: DeviceMessage | None
    error: codec.DecodeError | None


@dataclass
class EdgeListener:
    """What the gateway would see: every device message of the hotel, decoded."""

    client: aiomqtt.Client
    hotel_id: str
    pending: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def put(self, received: Received) -> None:
        self.pending.append(received)
        self.arrived.set()

    async def next(
        self, match: Callable[[Received], bool] = lambda r: True, timeout_s: float = 5.0
    ) -> Received:
        """The oldest message not taken yet that matches (others stay pending)."""
        async with asyncio.timeout(timeout_s):
            while True:
                for index, received in enumerate(self.pending):
                    if match(received):
                        return self.pending.pop(index)
                self.arrived.clear()
                await self.arrived.wait()

    def clear(self) -> None:
        self.pending.clear()

    async def publish(self, topic: str, payload: bytes) -> None:
        await self.client.publish(topic, payload, qos=1)


@pytest.fixture
async def edge(broker: Broker, hotel_id: str) -> AsyncIterator[EdgeListener]:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"edge-{hotel_id}",
        timeout=5,
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    ) as client:
        for topic_filter in codec.subscriptions(hotel_id):
            await client.subscribe(topic_filter, qos=1)
        listener = EdgeListener(client, hotel_id)

        async def pump() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes)
                topic = message.topic.value
                try:
                    decoded: DeviceMessage | None = codec.decode(topic, payload, hotel_id=hotel_id)
                    error = None
                except codec.DecodeError as exc:
                    decoded, error = None, exc
                listener.put(Received(topic, payload, message.retain, decoded, error))

        task = asyncio.create_task(pump(), name=f"edge-listener-{hotel_id}")
        try:
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
