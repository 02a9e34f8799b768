"""A real gateway and the relay's bridge endpoint: devices → Mosquitto → gateway →
bridge → relay → REST, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import Opened
from bellhop_cloud.db.schema import desired_states, gateway_links
from bellhop_devices.messages import Channel
from bellhop_edge.bridge import client as client_module
from bellhop_edge.bridge.client import BridgeState
from bellhop_edge.config import EdgeConfig
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import (
    CloudHotel,
    EdgeSite,
    RawGateway,
    bridge_server,
    until,
)


async def started(gateway: Gateway) -> None:
    await asyncio.wait_for(gateway.link.connected.wait(), 10)


async def settle(gateway: Gateway, timeout: float = 20.0) -> None:
    """Everything the gateway has written so far is applied at the relay: the relay
    acknowledges only after its commit, and the edge has nothing left unacknowledged."""
    await gateway.writer.flush()
    await until(lambda: gateway.store.outbox_backlog().total == 0, timeout)


async def test_a_reading_and_an_alert_reach_the_cloud(hotel: CloudHotel, site: EdgeSite) -> None:
    async with bridge_server(hotel.api.relay) as bridge:
        async with Gateway(site.config(bridge.url)) as gateway:
            await started(gateway)
            await site.telemetry(120)
            await site.breach()
            await settle(gateway)
            link = await hotel.link()
            assert link["connected"] is True
            assert link["backlog_events"] >= 0
            assert link["gateway_id"] == hotel.gateway_id
            # On-site IT sees the same from the gateway's LAN status.
            assert gateway.status().cloud_bridge == "open"
        # The gateway stopped: the relay says so, and why.
        await until(lambda: bridge.endpoint.connected == 0)
    link = await hotel.link()
    assert link["connected"] is False
    assert link["close_reason"] == "connection_lost"

    points = await hotel.points("r102-env")
    assert len(points) == 120
    stamps = [datetime.fromisoformat(p["ts"]) for p in points]
    assert stamps == sorted(stamps)
    buckets = await hotel.get(
        "/devices/r102-env/telemetry",
        metric="humidity",
        start="2000-01-01T00:00:00Z",
        end="2100-01-01T00:00:00Z",
        every_s=3600,
    )
    assert sum(b["count"] for b in buckets["points"]) == 120

    device = await hotel.get("/devices/r102-env")
    assert device["kind"] == "environment_sensor"
    assert device["room_id"] == "102"
    alerts = await hotel.get("/alerts", state="open")
    assert [a["device_id"] for a in alerts] == ["r101-door"]
    assert alerts[0]["kind"] == "breach"
    rooms = await hotel.get("/rooms")
    assert {r["room_id"] for r in rooms["items"]} >= {"101", "102"}


async def test_an_outage_loses_nothing_and_repeats_nothing(
    hotel: CloudHotel, site: EdgeSite
) -> None:
    """The relay is down while devices report; when it is back every reading arrives
    once, and the breach raised during the outage goes first."""
    async with bridge_server(hotel.api.relay) as bridge:
        port = bridge.port
        async with Gateway(site.config(bridge.url)) as gateway:
            await started(gateway)
            await site.telemetry(50)
            await settle(gateway)
    async with Gateway(site.config(f"ws://127.0.0.1:{port}/v1/bridge")) as gateway:
        await started(gateway)
        await site.telemetry(400, start=51)
        await site.breach()
        await gateway.writer.flush()
        assert gateway.bridge is not None
        bridge_client = gateway.bridge
        assert bridge_client.state is not BridgeState.OPEN
        async with bridge_server(hotel.api.relay, port=port):
            await settle(gateway)
    points = await hotel.points("r102-env")
    assert len(points) == 450
    assert len({p["ts"] for p in points}) == 450
    alerts = await hotel.get("/alerts")
    assert len(alerts) == 1


async def test_a_revoked_gateway_is_cut_off_and_stops_retrying(
    hotel: CloudHotel, site: EdgeSite
) -> None:
    async with (
        bridge_server(hotel.api.relay) as bridge,
        Gateway(site.config(bridge.url)) as gateway,
    ):
        await started(gateway)
        assert gateway.bridge is not None
        client = gateway.bridge
        await until(lambda: client.state is BridgeState.OPEN)
        await hotel.revoke()
        # The check runs every 0.2 s here (5 s by default).
        await until(lambda: client.state is BridgeState.STOPPED, timeout=5)
        assert "revoked" in (client.stats.last_close or "")
        status = gateway.status()
        assert status.cloud_bridge.startswith("stopped")
        assert status.cloud_last_close.startswith("revoked")
        # The relay's end finishes its close on its own time (a loaded machine: later).
        await until(lambda: bridge.endpoint.connected == 0)
        # STOPPED is final: the client's task has ended, nothing will dial again.
        assert client.stats.connects == 1
    link = await hotel.link()
    assert link["close_reason"] == "revoked"
    assert bridge.endpoint.closes["revoked"] == 1


async def test_a_second_connection_replaces_the_first(hotel: CloudHotel, site: EdgeSite) -> None:
    """Two gateways with one identity (a restored backup left running): the newer wins,
    the older reconnects, and nothing is applied twice."""
    async with (
        bridge_server(hotel.api.relay) as bridge,
        Gateway(site.config(bridge.url)) as gateway,
    ):
        await started(gateway)
        assert gateway.bridge is not None
        first = gateway.bridge
        await until(lambda: first.state is BridgeState.OPEN)
        await site.telemetry(30)
        await settle(gateway)
        first.stats.closes.clear()
        # The same gateway opens a second connection (the first is now a stale link).
        async with RawGateway.opened(
            bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key
        ) as raw:
            await raw.until_event(Opened)
            await until(lambda: first.stats.closes.get("replaced", 0) == 1)
        await until(lambda: first.state is BridgeState.OPEN)
        await site.telemetry(10, start=31)
        await settle(gateway)
    assert bridge.endpoint.closes["replaced"] >= 1
    assert len(await hotel.points("r102-env")) == 40


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a stopped gateway's database, as a backup would be."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


async def _backed_up_then_moved_on(site: EdgeSite, bridge_url: str, backup: Path) -> EdgeConfig:
    """50 readings delivered, a backup taken, 30 more delivered; the gateway's config."""
    config = site.config(bridge_url)
    async with Gateway(config) as gateway:
        await started(gateway)
        await site.telemetry(50)
        await settle(gateway)
    _copy_database(config.database_path, backup)
    async with Gateway(config) as gateway:
        await started(gateway)
        await site.telemetry(30, start=51)
        await settle(gateway)
    return config


def _restore(backup: Path, config: EdgeConfig) -> None:
    for stale in config.data_dir.glob("edge.db*"):
        stale.unlink()
    _copy_database(backup, config.database_path)


async def test_an_edge_restored_from_an_older_copy_loses_nothing(
    hotel: CloudHotel, site: EdgeSite, tmp_path: Path
) -> None:
    """After a restore the edge's sequence goes back; what it records then must not be
    taken for repeats of what the relay already has."""
    backup = tmp_path / "backup.db"
    async with bridge_server(hotel.api.relay) as bridge:
        config = await _backed_up_then_moved_on(site, bridge.url, backup)
        # The gateway's disk is replaced; the older copy comes back.
        _restore(backup, config)
        async with Gateway(config) as gateway:
            await started(gateway)
            await site.telemetry(20, start=81)
            await settle(gateway)
            assert gateway.bridge is not None
            assert gateway.bridge.stats.resyncs == 1
    points = await hotel.points("r102-env")
    assert len(points) == len({p["ts"] for p in points}) == 100


async def test_an_edge_restored_and_busy_before_it_reconnects_loses_nothing(
    hotel: CloudHotel, site: EdgeSite, tmp_path: Path
) -> None:
    """A restored edge that records more than it lost before the relay is back: its
    database alone cannot tell it went back in time, its sent mark can."""
    backup = tmp_path / "backup.db"
    async with bridge_server(hotel.api.relay) as bridge:
        config = await _backed_up_then_moved_on(site, bridge.url, backup)
        port = bridge.port
    # The relay is away; the older copy comes back and the hotel goes on meanwhile,
    # past where the relay stands.
    _restore(backup, config)
    async with Gateway(config) as gateway:
        await started(gateway)
        await site.telemetry(60, start=81)
        await until(lambda: gateway.hotel.accepted >= 60)
        await gateway.writer.flush()
    async with (
        bridge_server(hotel.api.relay, port) as bridge,
        Gateway(site.config(bridge.url)) as gateway,
    ):
        await started(gateway)
        await settle(gateway)
        assert gateway.bridge is not None
        assert gateway.bridge.stats.resyncs == 1
    points = await hotel.points("r102-env")
    assert sorted(p["value"] for p in points) == sorted(float(seq % 100) for seq in range(1, 141))


async def desired_rows(hotel: CloudHotel) -> dict[str, tuple[int, dict[str, object]]]:
    async with hotel.api.relay.store.read() as conn:
        rows = await conn.execute(
            sa.select(
                desired_states.c.device_id, desired_states.c.version, desired_states.c["values"]
            ).where(desired_states.c.hotel_id == hotel.hotel_id)
        )
        return {device: (version, values) for device, version, values in rows}


async def test_what_staff_set_on_the_lan_reaches_the_cloud_and_survives_a_resync(
    hotel: CloudHotel, site: EdgeSite
) -> None:
    async with bridge_server(hotel.api.relay) as bridge:
        async with Gateway(site.config(bridge.url)) as gateway:
            await started(gateway)
            gateway.set_desired("r101-thermostat", {"setpoint": 22.5}, by="alice")
            gateway.set_desired("r101-thermostat", {"setpoint": 23.0}, by="alice")
            await settle(gateway)
        assert await desired_rows(hotel) == {"r101-thermostat": (2, {"setpoint": 23.0})}
        # The relay loses what it had of this hotel (a restored database): the snapshot
        # it asks for brings the desired state back.
        async with hotel.api.relay.store.write() as conn:
            await conn.execute(desired_states.delete())
            await conn.execute(gateway_links.delete())
        async with Gateway(site.config(bridge.url)) as gateway:
            await started(gateway)
            await until(lambda: bridge.endpoint.snapshots >= 1)
            await settle(gateway)
    assert await desired_rows(hotel) == {"r101-thermostat": (2, {"setpoint": 23.0})}


async def test_a_sender_that_fails_ends_the_bridge_and_the_next_one_delivers_everything(
    hotel: CloudHotel, site: EdgeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outbox read that fails once must not leave a bridge that answers heartbeats but
    sends nothing: it closes with `internal`, reconnects, and what was written arrives."""
    async with (
        bridge_server(hotel.api.relay) as bridge,
        Gateway(site.config(bridge.url)) as gateway,
    ):
        await started(gateway)
        client = gateway.bridge
        assert client is not None
        await until(lambda: client.state is BridgeState.OPEN)
        real = gateway.store.outbox_after
        failures = [sqlite3.OperationalError("disk I/O error")]

        def outbox_after(*args: object, **kwargs: object) -> object:
            if failures:
                raise failures.pop()
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(gateway.store, "outbox_after", outbox_after)
        await site.telemetry(40)
        await settle(gateway)
        assert client.stats.closes.get("internal") == 1
        assert client.stats.opens == 2
    points = await hotel.points("r102-env")
    assert len(points) == 40


async def test_a_snapshot_past_one_frame_is_not_sent_and_the_bridge_goes_on(
    hotel: CloudHotel,
    site: EdgeSite,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hotel too large for one snapshot frame: the gateway says so once and streams on,
    instead of sending a frame the relay refuses on every connection."""

    def huge(*args: object) -> bridge_pb2.Snapshot:
        devices = [
            common_pb2.Device(device_id=f"dev-{i:05d}", registered=True, firmware="x" * 200)
            for i in range(6_000)
        ]
        return bridge_pb2.Snapshot(devices=devices)

    monkeypatch.setattr(client_module, "snapshot", huge)
    async with (
        bridge_server(hotel.api.relay) as bridge,
        Gateway(site.config(bridge.url)) as gateway,
    ):
        await started(gateway)
        await until(lambda: "more than one bridge frame holds" in caplog.text)
        await site.telemetry(10)
        await settle(gateway)
        assert gateway.bridge is not None
        assert gateway.bridge.stats.opens == 1
    assert "too_large" not in bridge.endpoint.closes
    assert len(await hotel.points("r102-env")) == 10


async def test_the_relay_outlives_a_database_that_went_away(
    hotel: CloudHotel, site: EdgeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails with the error a PostgreSQL driver raises when the server is gone
    (an OSError, not one of SQLAlchemy's) costs one handshake a retry; the relay's
    background writer lives on and the gateway's bridge opens."""
    store = hotel.api.relay.store
    real = store.write
    failures = [ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")]

    def write() -> object:
        if failures:
            raise failures.pop()
        return real()

    monkeypatch.setattr(store, "write", write)
    async with (
        bridge_server(hotel.api.relay) as bridge,
        Gateway(site.config(bridge.url)) as gateway,
    ):
        await started(gateway)
        await site.telemetry(5)
        await settle(gateway)
        assert not failures
    assert len(await hotel.points("r102-env")) == 5


class StallingProxy:
    """TCP between the gateway and the relay that, once stalled, reads nothing more from the
    gateway and closes nothing: a path that lost its packets, as its sender sees it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.stalled = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/bridge"

    async def __aenter__(self) -> StallingProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        if self.stalled.is_set():
            await asyncio.Event().wait()  # a new connection into the dead path
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(up_writer)
        await asyncio.gather(
            self._pump(reader, up_writer), self._pump(up_reader, writer), return_exceptions=True
        )

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            if self.stalled.is_set():
                await asyncio.Event().wait()
            dst.write(data)
            await dst.drain()
        dst.close()


async def test_a_path_that_stops_taking_data_is_left_within_the_peer_timeout(
    hotel: CloudHotel, site: EdgeSite
) -> None:
    """With a backlog bigger than the sockets' buffers, the gateway's sends block on a path
    that stopped taking data; the bridge is still left within the peer timeout, not when
    the kernel gives up on the connection many minutes later."""
    big = {f"k{i:02d}": "x" * 110 for i in range(32)}  # about 4 KB, the protocol's limit
    async with (
        bridge_server(
            hotel.api.relay,
            bridge_heartbeat_s=1.0,
            bridge_window_events=50_000,
            bridge_window_bytes=64 << 20,
        ) as bridge,
        StallingProxy(bridge.port) as proxy,
        Gateway(site.config(proxy.url)) as gateway,
    ):
        await started(gateway)
        client = gateway.bridge
        assert client is not None
        await until(lambda: client.state is BridgeState.OPEN)
        proxy.stalled.set()
        async with site.device("r102-env") as device:
            base = int(time.time() * 1000)
            for i in range(6_000):
                await device.send(Channel.STATE, {"v": 1, "ts": base + i, "values": big})
        # The sends block once the sockets' buffers are full (a few MB, well short of
        # the backlog), and the bridge is left within the peer timeout (3 s) plus its
        # close's own timeout.
        await until(lambda: client.state is not BridgeState.OPEN, 20)
        assert client.stats.events_sent < 6_000
