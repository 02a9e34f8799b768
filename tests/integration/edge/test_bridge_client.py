"""The gateway's bridge client over real WebSockets: once, in order, after any outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import CloseCode
from bellhop_devices.messages import Channel
from bellhop_edge.bridge.client import BridgeState
from bellhop_edge.bridge.identity import Identity
from bellhop_edge.files import write_atomic
from bellhop_edge.gateway import Gateway
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.integration.edge.conftest import FakeDevice, gateway_config
from tests.integration.edge.relay_double import RelayDouble
from tests.support.mosquitto import Credentials, MosquittoBroker

BULK, PRIORITY = bridge_pb2.LANE_BULK, bridge_pb2.LANE_PRIORITY
KEY = Ed25519PrivateKey.generate()


def enrolled(data_dir: Path, hotel_id: str, port: int) -> None:
    """What `bellhop edge enrol` leaves behind, for a relay on `port`."""
    Identity("gw_test", hotel_id, f"http://127.0.0.1:{port}").save(data_dir)
    pem = KEY.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(Identity.directory(data_dir) / "key.pem", pem)


class Site:
    def __init__(self, tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str) -> None:
        self.tmp_path, self.mosquitto, self.hotel_id = tmp_path, mosquitto, hotel_id
        self.gw_creds = mosquitto.add_gateway(hotel_id)
        self.creds: dict[str, Credentials] = mosquitto.add_devices(
            hotel_id, ["r102-env", "r101-door"]
        )
        mosquitto.reload()

    def config(self, port: int) -> Any:
        config = gateway_config(
            self.tmp_path,
            self.hotel_id,
            self.mosquitto,
            self.gw_creds,
            bridge={"reconnect_min_s": 0.05, "reconnect_max_s": 0.2, "connect_timeout_s": 2},
        )
        enrolled(config.data_dir, self.hotel_id, port)
        return config

    async def telemetry(self, count: int, start: int = 1) -> None:
        from tests.integration.edge.conftest import device_client

        base = int(time.time() * 1000) - 100_000
        async with device_client(
            self.mosquitto, self.hotel_id, "r102-env", self.creds["r102-env"]
        ) as c:
            device = FakeDevice(self.hotel_id, "r102-env", c)
            for seq in range(start, start + count):
                body = {"v": 1, "ts": base + seq, "seq": seq, "metrics": {"humidity": 40}}
                await device.send(Channel.TELEMETRY, body)

    async def breach(self) -> None:
        from tests.integration.edge.conftest import device_client

        async with device_client(
            self.mosquitto, self.hotel_id, "r101-door", self.creds["r101-door"]
        ) as c:
            device = FakeDevice(self.hotel_id, "r101-door", c)
            body = {"v": 1, "ts": int(time.time() * 1000), "kind": "breach", "data": {}}
            await device.send(Channel.EVENT, body)


@pytest.fixture
def site(tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str) -> Site:
    return Site(tmp_path, mosquitto, hotel_id)


@pytest.fixture
async def relay() -> AsyncIterator[RelayDouble]:
    async with RelayDouble(KEY.public_key()).running() as double:
        yield double


async def subscribed(gateway: Gateway) -> None:
    """The gateway's broker session exists: from now on the broker keeps what devices send."""
    await asyncio.wait_for(gateway.link.connected.wait(), 10)


def points(relay: RelayDouble) -> list[int]:
    return [e.telemetry.ts.ToMilliseconds() for e in relay.of_kind("telemetry")]


async def test_every_event_reaches_the_relay_once_and_acks_are_kept(
    site: Site, relay: RelayDouble
) -> None:
    async with Gateway(site.config(relay.port)) as gateway:
        await subscribed(gateway)
        await site.telemetry(300)
        await relay.wait(lambda: len(points(relay)) >= 300)
        await gateway.writer.flush()
        bridge = gateway.bridge
        assert bridge is not None
        await relay.wait(
            lambda: bridge.stats.acked.get(BULK, 0) == max(s for _, s in relay.arrivals)
        )
        acked = bridge.stats.acked[BULK]
    assert len(points(relay)) == len(set(points(relay))) == 300
    # The acknowledgement was recorded: the next start resumes after it, sending nothing again.
    async with Gateway(site.config(relay.port)) as gateway:
        await subscribed(gateway)
        await relay.wait(lambda: relay.connections == 2)
        await site.telemetry(1, start=301)  # a marker
        await relay.wait(lambda: len(points(relay)) == 301)
        assert gateway.store.outbox_last_acked(BULK) >= acked
    assert len(relay.arrivals) == len(set(relay.arrivals))


async def test_after_an_outage_alarms_overtake_the_backlog_and_nothing_repeats(
    site: Site, tmp_path: Path
) -> None:
    double = RelayDouble(KEY.public_key())
    async with double.running():
        port = double.port
    # The relay is down: a backlog of telemetry, then a breach, pile up at the edge.
    async with Gateway(site.config(port)) as gateway:
        await subscribed(gateway)
        await site.telemetry(1500)
        await site.breach()
        await gateway.writer.flush()
        double.port = port
        async with double.running():
            await double.wait(
                lambda: len(points(double)) >= 1500 and double.of_kind("device_event")
            )
    first_lane = double.arrivals[0][0]
    assert first_lane == PRIORITY, "the alarm should have gone first"
    assert len(points(double)) == len(set(points(double))) == 1500
    assert [e.device_event.kind for e in double.of_kind("device_event")]
    assert len(double.of_kind("alert")) >= 1  # the breach raised an alert


async def test_what_the_relay_never_committed_is_sent_again_and_applied_once(
    site: Site, relay: RelayDouble
) -> None:
    relay.apply = False  # it takes the batches and dies before its commit, as it were
    async with Gateway(site.config(relay.port)) as gateway:
        await subscribed(gateway)
        await site.telemetry(200)
        await relay.wait(lambda: len([s for lane, s in relay.arrivals if lane == BULK]) >= 200)
        assert gateway.bridge is not None
        assert gateway.bridge.stats.acked.get(BULK, 0) == 0
    relay.apply = True
    # The link drops (here: the gateway restarts); what was never committed comes again.
    async with Gateway(site.config(relay.port)) as gateway:
        await subscribed(gateway)
        await relay.wait(lambda: relay.connections >= 2)
        await site.telemetry(1, start=201)
        await relay.wait(lambda: len(points(relay)) == 201)
    arrived = [s for lane, s in relay.arrivals if lane == BULK]
    assert len(arrived) > len(set(arrived)), "what was not committed should have been resent"
    assert len(points(relay)) == len(set(points(relay))) == 201


async def test_a_refused_gateway_stops_and_says_why(site: Site, relay: RelayDouble) -> None:
    relay.refuse = CloseCode.REVOKED
    async with Gateway(site.config(relay.port)) as gateway:
        assert gateway.bridge is not None
        bridge = gateway.bridge
        await relay.wait(lambda: bridge.state is BridgeState.STOPPED)
        assert relay.connections == 1
        assert "revoked" in (bridge.stats.last_close or "")


async def test_a_silent_link_is_noticed_by_heartbeats_and_the_bridge_recovers(
    site: Site,
) -> None:
    double = RelayDouble(KEY.public_key(), heartbeat_s=0.2)
    async with double.running(), Gateway(site.config(double.port)) as gateway:
        await subscribed(gateway)
        await site.telemetry(10)
        await double.wait(lambda: len(points(double)) >= 10)
        double.stall()  # packets vanish; no FIN: only heartbeats can tell
        await site.telemetry(10, start=11)
        assert gateway.bridge is not None
        bridge = gateway.bridge
        # Three silent heartbeat intervals (0.6 s; the bound itself is a unit test's).
        await double.wait(lambda: bridge.stats.closes.get("peer_timeout", 0) >= 1, timeout=10)
        await double.wait(lambda: len(points(double)) >= 20)
    assert len(points(double)) == len(set(points(double))) == 20


async def test_a_window_smaller_than_the_next_event_ends_the_bridge_with_that_reason(
    site: Site,
) -> None:
    # A relay misconfigured (or hostile) with a window no event fits: the gateway says so
    # and reconnects, instead of holding the bridge open and sending nothing.
    async with (
        RelayDouble(KEY.public_key(), window_bytes=40).running() as relay,
        Gateway(site.config(relay.port)) as gateway,
    ):
        await subscribed(gateway)
        await site.telemetry(5)
        bridge = gateway.bridge
        assert bridge is not None
        await relay.wait(lambda: bridge.stats.closes.get("window_exceeded", 0) >= 1)
        assert "window cannot hold the next event" in (bridge.stats.last_close or "")
