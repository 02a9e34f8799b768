"""A real Mosquitto for the device simulator's tests, an edge-side listener,
and waits on conditions (each with a deadline) instead of fixed sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel, DeviceMessage
from bellhop_devices.sim import Broker
from bellhop_edge.localbroker import MOSQUITTO, stop_process

from tests.support.mosquitto import PortTaken, free_port, require_mosquitto, wait_for_listener
from tests.support.waiting import NotWithin, until


@contextlib.contextmanager
def run_mosquitto(workdir: Path, port: int, extra_conf: str = "") -> Iterator[Broker]:
    """A Mosquitto listening on 127.0.0.1:`port`, stopped on exit."""
    require_mosquitto()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\npersistence false\nmax_queued_messages 10000\n"
        f"set_tcp_nodelay true\n{extra_conf}",
        encoding="utf-8",
    )
    log_path = workdir / "mosquitto.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log, stderr=log)
        try:
            # This broker itself listening, not just anything answering on the port.
            try:
                wait_for_listener(proc, port, timeout=10.0)
            except PortTaken as exc:
                raise PortTaken(f"mosquitto: {exc}; see {log_path}") from exc
            yield Broker(host="127.0.0.1", port=port)
        finally:
            stop_process(proc)


async def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    """Poll `predicate` until it holds; fail the test if it does not within `timeout_s`."""
    try:
        await until(predicate, timeout_s, what, every=0.01)
    except NotWithin:
        pytest.fail(f"not {what} within {timeout_s} s")


async def subscribe(client: aiomqtt.Client, topic_filters: list[str]) -> None:
    """Subscribe at QoS 1; returns once the SUBACK has granted every filter."""
    granted = await client.subscribe([(topic_filter, 1) for topic_filter in topic_filters])
    assert list(granted) == [1] * len(topic_filters), f"SUBACK granted {granted}"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Mosquitto on a free loopback port, anonymous clients allowed, no persistence."""
    with run_mosquitto(
        tmp_path_factory.mktemp("mosquitto"), free_port(), "allow_anonymous true\n"
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
    markers: int = 0

    def put(self, received: Received) -> None:
        self.pending.append(received)
        self.arrived.set()

    async def _index(self, match: Callable[[Received], bool], timeout_s: float) -> int:
        async with asyncio.timeout(timeout_s):
            while True:
                for index, received in enumerate(self.pending):
                    if match(received):
                        return index
                self.arrived.clear()
                await self.arrived.wait()

    async def next(
        self, match: Callable[[Received], bool] = lambda r: True, timeout_s: float = 5.0
    ) -> Received:
        """The oldest message not taken yet that matches (others stay pending)."""
        return self.pending.pop(await self._index(match, timeout_s))

    async def barrier(self, timeout_s: float = 5.0) -> list[Received]:
        """Take every message the broker routed here before now, in order.

        Publishes a marker to a topic this listener subscribes to and waits
        for it: the broker forwards to one subscriber in the order it routed,
        so whatever was published before the marker arrives before it. This
        is how a test shows that something did not happen.
        """
        self.markers += 1
        marker_topic = codec.topic(self.hotel_id, "test-marker", Channel.EVENT)
        payload = f"marker-{self.markers}".encode()
        await self.publish(marker_topic, payload)
        index = await self._index(
            lambda r: r.topic == marker_topic and r.payload == payload, timeout_s
        )
        before = self.pending[:index]
        del self.pending[: index + 1]
        return before

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
        await subscribe(client, codec.subscriptions(hotel_id))
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
