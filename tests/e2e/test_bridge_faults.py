"""The bridge under real faults: every event reaches the cloud once, whatever breaks.

Real processes throughout: Mosquitto, `bellhop edge run` enrolled with the real
`bellhop edge enrol`, and `bellhop cloud run` on SQLite (and PostgreSQL).
Devices report over MQTT (telemetry from several sensors, door and breach
events from door sensors) while the link or a process fails:

- a partition: the relay stopped (SIGTERM) while devices report and staff
  work on the LAN, then back;
- the gateway killed (SIGKILL) mid-stream and while it drains a backlog;
- the relay killed (SIGKILL) while it applies a backlog's batches;
- a half-open link: a proxy that stops forwarding without closing anything,
  which only the protocol's heartbeats can find.

Afterwards the relay must hold exactly what the gateway holds: every reading
(REST history), every device event in the gateway's order per device (the
relay's `device_events` table, which has no unique key, so an event applied
twice would show as two rows), and every alert as it stands on the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiomqtt
import grpc
import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role

from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.link_proxy import LinkProxy
from tests.support.mosquitto import MosquittoBroker, device_client
from tests.support.relay_process import (
    RelayProcess,
    Tenant,
    bytecode_cache,
    enrol_gateway,
    identity,
    postgres_database,
)

SENSORS: Final = ("r101-env1", "r101-env2", "r101-env3")
DOORS: Final = ("r101-door1", "r101-door2")
# The edge's two outbox lanes, by device event kind: alarms travel on the priority lane.
ALARMS: Final = frozenset({"breach", "gas"})
ROUTINE: Final = frozenset({"door"})
DEVICES: Final = {
    **dict.fromkeys(SENSORS, "environment_sensor"),
    **dict.fromkeys(DOORS, "door_sensor"),
}
METRIC: Final = "humidity"
# Fast reconnects, and small batches so that a backlog takes many round trips to
# drain: the kills below must land while batches are in flight, not after.
BRIDGE: Final = """
[bridge]
reconnect_min_s = 0.05
reconnect_max_s = 0.5
connect_timeout_s = 2
batch_events = 20
"""
# At most two batches unacknowledged (see BRIDGE).
SMALL_WINDOW: Final[Mapping[str, str | int | float]] = {"bridge_window_events": 40}
STAFF: Final = "front-desk"
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def seconds_until(predicate: Callable[[], bool], timeout: float = 10) -> float:
    """In a thread: how long `predicate` took to hold, from now; TimeoutError after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout} s")
        time.sleep(0.005)
    return time.monotonic() - started


def _silence(log: str) -> float:
    """The silence a peer timeout was declared after, as the last such line says."""
    found = re.findall(r"peer_timeout\W+nothing heard for ([0-9.]+) s", log)
    assert found, "no peer timeout logged"
    return float(found[-1])


# -- the hotel's devices --------------------------------------------------------------------
class Devices:
    """Each device on its own MQTT account, and everything each one has sent.

    Every message is unique (a reading's time, an event's `n`), so what the
    relay holds can be matched one to one against what was sent.
    """

    def __init__(self, mosquitto: MosquittoBroker, hotel_id: str) -> None:
        self.mosquitto, self.hotel_id = mosquitto, hotel_id
        self.creds = mosquitto.add_devices(hotel_id, list(DEVICES))
        self.points: dict[str, list[int]] = {d: [] for d in SENSORS}
        self.events: dict[str, list[tuple[str, int, int]]] = {d: [] for d in DOORS}
        self._clients: dict[str, aiomqtt.Client] = {}
        self._stack = contextlib.AsyncExitStack()
        # Readings a millisecond apart, in the past (the gateway refuses the future).
        self._base = int(time.time() * 1000) - 3_600_000

    async def __aenter__(self) -> Devices:
        for device_id in DEVICES:
            creds = self.creds[device_id]
            client = device_client(self.mosquitto, creds, f"{self.hotel_id}-{device_id}")
            self._clients[device_id] = await self._stack.enter_async_context(client)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def sent(self) -> int:
        return sum(map(len, self.points.values())) + sum(map(len, self.events.values()))

    async def report(self, readings: int, door_events: int, *, breach_every: int = 0) -> None:
        """Each sensor sends `readings`, each door sensor `door_events`, all at once."""
        await asyncio.gather(
            *(self._sensor(d, readings) for d in SENSORS),
            *(self._door(d, door_events, breach_every) for d in DOORS),
        )

    async def breach(self) -> None:
        """One breach on each door (the last word: no closing follows to clear it)."""
        await asyncio.gather(*(self._door(d, 1, breach_every=1) for d in DOORS))

    async def _publish(self, device_id: str, channel: Channel, body: dict[str, Any]) -> None:
        topic = codec.topic(self.hotel_id, device_id, channel)
        # QoS 1: once this returns the broker holds it for the gateway, up or down.
        await self._clients[device_id].publish(topic, json.dumps(body).encode(), qos=1)

    async def _sensor(self, device_id: str, count: int) -> None:
        sent = self.points[device_id]
        for _ in range(count):
            seq = len(sent) + 1
            ts = self._base + seq
            body = {"v": 1, "ts": ts, "seq": seq, "metrics": {METRIC: seq % 100}}
            await self._publish(device_id, Channel.TELEMETRY, body)
            sent.append(ts)

    async def _door(self, device_id: str, count: int, breach_every: int) -> None:
        sent = self.events[device_id]
        for _ in range(count):
            n = len(sent) + 1
            ts = self._base + n
            if breach_every and n % breach_every == 0:
                kind, data = "breach", {"n": n, "reason": "forced"}
            else:
                kind, data = "door", {"open": n % 2 == 1, "n": n}
            await self._publish(
                device_id, Channel.EVENT, {"v": 1, "ts": ts, "kind": kind, "data": data}
            )
            sent.append((kind, ts, n))


# -- the gateway -----------------------------------------------------------------------------
class Gateway:
    """`bellhop edge run` for the hotel, and what its database says."""

    def __init__(self, workdir: Path, mosquitto: MosquittoBroker, hotel_id: str) -> None:
        workdir.mkdir(parents=True)
        self.config = workdir / "edge.toml"
        creds = mosquitto.add_gateway(hotel_id)
        self.lan_port = write_config(
            self.config,
            hotel_id=hotel_id,
            mosquitto=mosquitto,
            gateway=creds,
            devices=dict(DEVICES),
            extra=BRIDGE,
        )
        self.data_dir = workdir / "edge"
        self.token = LocalTokens(self.data_dir / "staff-tokens.json").create(STAFF, Role.STAFF)
        self.process = EdgeProcess(self.config)
        self.database = self.process.database

    def start(self) -> None:
        self.process.start()

    def kill(self) -> None:
        self.process.kill()

    def logged(self, text: str) -> int:
        return self.process.logged(text)

    def logged_at(self, text: str, index: int) -> float:
        """When (epoch seconds) the log line holding `text` for the `index`-th time was written."""
        lines = [line for line in self.process.log.read_text().splitlines() if text in line]
        stamp = datetime.strptime(lines[index][:23], "%Y-%m-%d %H:%M:%S,%f")
        return stamp.timestamp()  # the gateway logs local time, as time.time() is read here

    def opens(self) -> int:
        """Bridges opened, over all runs."""
        return self.logged("open; resuming after")

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        if not self.database.exists():
            return []
        db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
        try:
            return [tuple(row) for row in db.execute(sql).fetchall()]
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # the gateway has not created it yet
                return []
            raise
        finally:
            db.close()

    def committed(self) -> int:
        """Readings and device events the gateway has stored (each once, however delivered)."""
        points = self._query(
            "SELECT count(*) FROM (SELECT series_id, ts FROM telemetry_recent"
            " UNION SELECT series_id, ts FROM telemetry)"
        )
        events = self._query("SELECT count(*) FROM events")
        return (int(points[0][0]) if points else 0) + (int(events[0][0]) if events else 0)

    def backlog(self) -> int:
        """Outbox events the relay has not acknowledged yet, over both lanes."""
        rows = self._query(
            "SELECT count(*) FROM outbox, outbox_state WHERE"
            " (lane = 1 AND seq > last_acked_seq) OR (lane = 2 AND seq > last_acked_priority_seq)"
        )
        return int(rows[0][0]) if rows else 0

    def events(self) -> list[tuple[Any, ...]]:
        """(device, kind, ts, data) of every device event, in the order the gateway stored them."""
        return self._query("SELECT device_id, kind, ts, data FROM events ORDER BY event_id")

    def alerts(self) -> dict[str, tuple[Any, ...]]:
        rows = self._query("SELECT alert_id, kind, state, device_id, acknowledged_by FROM alerts")
        return {str(r[0]): tuple(r[1:]) for r in rows}

    @contextlib.asynccontextmanager
    async def lan(self) -> AsyncIterator[tuple[lan_pb2_grpc.LanServiceAsyncStub, Metadata]]:
        """The LAN API as staff reach it: a channel and the staff token."""
        auth = (("authorization", f"Bearer {self.token}"),)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.lan_port}") as channel:
            yield lan_pb2_grpc.LanServiceStub(channel), auth


# -- the whole hotel ---------------------------------------------------------------------------
class Site:
    def __init__(
        self, relay: RelayProcess, tenant: Tenant, gateway: Gateway, devices: Devices
    ) -> None:
        self.relay, self.tenant, self.gateway, self.devices = relay, tenant, gateway, devices

    async def stored(self, timeout: float = 60) -> None:
        """Wait until the gateway has stored everything the devices sent."""
        total = self.devices.sent
        await until(lambda: self.gateway.committed() >= total, timeout, f"{total} stored")

    async def settled(self, timeout: float = 60) -> None:
        """Wait until everything sent is stored and acknowledged by the relay (after its commit)."""
        await self.stored(timeout)
        await until(lambda: self.gateway.backlog() == 0, timeout, "backlog acknowledged")

    async def assert_exactly_once(self) -> None:
        """The relay holds each event once, as the gateway does; none lost, none repeated."""
        await self.settled()
        gateway, tenant = self.gateway, self.tenant
        # Readings: the history through the REST API, point for point.
        for device_id, sent in self.devices.points.items():
            got = [_ms(p["ts"]) for p in tenant.points(device_id, METRIC)]
            missing = sorted(set(sent) - set(got))
            assert not missing, f"{device_id}: {len(missing)} readings lost, first {missing[:5]}"
            assert got == sorted(sent), f"{device_id}: {len(got)} readings for {len(sent)} sent"
        # Device events: what the gateway stored is what was sent, each once...
        edge_events = [_event(*row) for row in gateway.events()]
        sent_events = [
            (device_id, kind, ts, n)
            for device_id, events in self.devices.events.items()
            for kind, ts, n in events
        ]
        stored = sorted((e[0], e[1], e[2], json.loads(e[3])["n"]) for e in edge_events)
        assert stored == sorted(sent_events), "the gateway did not store each event once"
        # ... and the relay holds each of the gateway's events once, data and all, in the
        # gateway's order per device within each lane: alarms overtake a backlog of routine
        # events by design, and the lanes may interleave devices differently.
        relay_rows = await self.relay.rows(
            "SELECT device_id, kind, ts, data FROM device_events WHERE hotel_id = $1 ORDER BY id",
            tenant.hotel_id,
        )
        relay_events = [_event(*row) for row in relay_rows]
        repeated = {e: c for e, c in Counter(relay_events).items() if c > 1}
        assert not repeated, f"{len(repeated)} events applied more than once: {list(repeated)[:5]}"
        lost = set(edge_events) - set(relay_events)
        assert not lost, f"{len(lost)} events lost: {sorted(lost)[:5]}"
        assert len(relay_events) == len(edge_events)
        for device_id in DOORS:
            for lane in (ALARMS, ROUTINE):
                edge_order = [e for e in edge_events if e[0] == device_id and e[1] in lane]
                relay_order = [e for e in relay_events if e[0] == device_id and e[1] in lane]
                assert relay_order == edge_order, (
                    f"{device_id}: the relay's order of {sorted(lane)} is not the gateway's"
                )
        # Alerts: as they stand on the gateway, acknowledgements included.
        edge_alerts = gateway.alerts()
        relay_alerts = {
            a["alert_id"]: (a["kind"], a["state"], a["device_id"], a["acknowledged_by"])
            for a in tenant.alerts()
        }
        assert relay_alerts == edge_alerts
        # Nothing had to be dropped on the way.
        link = tenant.link()
        assert (link["gap_points"], link["gap_events"]) == (0, 0), link


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def _event(device_id: str, kind: str, ts: int, data: Any) -> tuple[str, str, int, str]:
    """A device event as either end stores it, comparable across them: the relay's JSON
    holds numbers as the protobuf Struct does (doubles), the gateway's as they came."""
    values = json.loads(data) if isinstance(data, str) else data
    plain = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in values.items()}
    return str(device_id), str(kind), int(ts), json.dumps(plain, sort_keys=True)


@contextlib.asynccontextmanager
async def hotel(
    tmp_path: Path,
    mosquitto: MosquittoBroker,
    *,
    database_url: str | None = None,
    settings: Mapping[str, str | int | float] | None = None,
    proxy: LinkProxy | None = None,
) -> AsyncIterator[Site]:
    """A relay, a hotel in it, its gateway enrolled and bridged, and its devices connected.

    With `proxy`, the relay tells the gateway at enrolment to dial the proxy.
    Every process is gone when the block ends, however it ends.
    """
    settings = dict(settings or {})
    if proxy is not None:
        await proxy.start()
        settings["bridge_public_url"] = proxy.url
    relay = RelayProcess(tmp_path / "relay", database_url=database_url, settings=settings)
    gateway: Gateway | None = None
    try:
        if proxy is not None:
            proxy.target_port = relay.bridge_port
        await asyncio.to_thread(relay.start)
        tenant = relay.tenant()
        gateway = Gateway(tmp_path / "gateway", mosquitto, tenant.hotel_id)
        devices = Devices(mosquitto, tenant.hotel_id)
        mosquitto.reload()
        await asyncio.to_thread(enrol_gateway, gateway.config, relay, tenant.enrolment_token())
        # The gateway dials what the relay's enrolment answer named.
        dials = proxy.url if proxy is not None else relay.bridge_url
        assert identity(gateway.data_dir)["bridge_endpoint"] == dials
        gateway.start()
        # Connected to the broker (its session holds what devices send from now on),
        # bridged, and the relay has taken its first snapshot.
        await until(lambda: gateway.process.subscribed() >= 1, 30, "gateway on the broker")
        await until(lambda: relay.logged("snapshot applied") >= 1, 30, "first snapshot")
        async with devices:
            yield Site(relay, tenant, gateway, devices)
    finally:
        try:
            if gateway is not None and gateway.process.proc is not None:
                gateway.process.stop(signal.SIGKILL)
        finally:
            relay.close()
            if proxy is not None:
                await proxy.close()


# -- 1. partition ----------------------------------------------------------------------------
@pytest.mark.timeout(150)
async def test_a_partition_loses_nothing_and_repeats_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The relay stops (SIGTERM) while devices report and staff work on the LAN; back,
    it receives everything once, the staff's acknowledgement included."""
    async with hotel(tmp_path, mosquitto) as site:
        relay, gateway, devices = site.relay, site.gateway, site.devices
        await devices.report(readings=60, door_events=20)
        await site.settled()

        status = relay.stop(signal.SIGTERM)
        # A clean stop: uvicorn shuts down, then `bellhop cloud run` exits with 0.
        assert status == 0, relay.tail()
        assert relay.logged("Application shutdown complete") == 1, relay.tail()
        await until(lambda: gateway.logged("shutting_down") >= 1, 10, "the gateway told why")

        before = devices.sent
        await devices.report(readings=250, door_events=80, breach_every=15)
        await devices.breach()
        await site.stored()
        # The LAN works on: the staff acknowledge the breach the relay has not heard of.
        async with gateway.lan() as (stub, auth):
            status_reply = await stub.GetGatewayStatus(
                lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=5, wait_for_ready=True
            )
            assert status_reply.broker_connected
            listed = await stub.ListAlerts(
                lan_pb2.ListAlertsRequest(states=[common_pb2.ALERT_STATE_RAISED]),
                metadata=auth,
                timeout=5,
            )
            breaches = [a for a in listed.alerts if a.kind == common_pb2.ALERT_KIND_BREACH]
            assert len(breaches) == len(DOORS)
            acked = await stub.AcknowledgeAlert(
                lan_pb2.AcknowledgeAlertRequest(alert_id=breaches[0].alert_id, note="on my way"),
                metadata=auth,
                timeout=5,
            )
        assert acked.alert.state == common_pb2.ALERT_STATE_ACKNOWLEDGED
        assert gateway.backlog() >= devices.sent - before  # held at the edge, not lost
        assert gateway.logged("cannot reach the relay") >= 1

        await asyncio.to_thread(relay.start)
        await site.assert_exactly_once()
        alerts = {a["alert_id"]: a for a in site.tenant.alerts()}
        assert alerts[breaches[0].alert_id]["state"] == "acknowledged"
        assert alerts[breaches[0].alert_id]["acknowledged_by"] == STAFF


# -- 2. the gateway killed ----------------------------------------------------------------------
@pytest.mark.timeout(150)
async def test_a_gateway_killed_mid_stream_and_while_draining_sends_everything_once(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """SIGKILL while devices report and the bridge streams, then three times while a
    backlog drains: a restarted gateway resends from the relay's acknowledgements, not
    from what it had recorded of them, and the relay applies each event once."""
    proxy = LinkProxy()
    async with hotel(tmp_path, mosquitto, settings=SMALL_WINDOW, proxy=proxy) as site:
        gateway, devices = site.gateway, site.devices
        # Mid-stream: killed while devices report and the bridge streams.
        reporting = asyncio.create_task(devices.report(readings=150, door_events=80))
        try:
            await until(lambda: gateway.committed() >= 200, 30, "streaming")
            gateway.kill()
            gateway.start()
        finally:
            await reporting
        await site.settled()

        # A backlog: the relay unreachable while the devices report.
        proxy.refuse()
        before = devices.sent
        await devices.report(readings=400, door_events=300, breach_every=25)
        await site.stored()
        backlog = gateway.backlog()
        assert backlog >= devices.sent - before
        proxy.restore()
        # Killed at different points of the drain; each restart resumes where the
        # relay's acknowledgements stopped, whatever the gateway had recorded of them.
        remaining = []
        for share in (0.8, 0.5, 0.2):

            def drained(share: float = share) -> bool:
                return gateway.backlog() <= backlog * share

            await until(drained, 60, f"drained to {share}")
            gateway.kill()
            remaining.append(gateway.backlog())
            gateway.start()
        assert all(r > 0 for r in remaining), f"killed after the drain ended: {remaining}"
        assert gateway.process.kills == 4
        await site.assert_exactly_once()


# -- 3. the relay killed -------------------------------------------------------------------------
@pytest.mark.timeout(200)
@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_relay_killed_while_applying_batches_applies_each_once(
    tmp_path: Path, mosquitto: MosquittoBroker, store: str
) -> None:
    """SIGKILL three times while the relay applies a backlog of thousands: each batch
    and its lanes' positions commit together or not at all, so after each restart the
    gateway resends what was not acknowledged and nothing is applied twice."""
    async with contextlib.AsyncExitStack() as stack:
        database_url = None
        if store == "postgres":
            database_url = await stack.enter_async_context(postgres_database())
        proxy = LinkProxy()
        site = await stack.enter_async_context(
            hotel(
                tmp_path,
                mosquitto,
                database_url=database_url,
                settings=SMALL_WINDOW,
                proxy=proxy,
            )
        )
        relay, gateway, devices = site.relay, site.gateway, site.devices
        await devices.report(readings=30, door_events=10)
        await site.settled()
        # A backlog of thousands, half of them device events (the rows a double
        # apply would duplicate), built while the relay is unreachable.
        proxy.refuse()
        before = devices.sent
        # Large enough that the relay, however fast, is still applying at each kill.
        await devices.report(readings=1200, door_events=1500, breach_every=120)
        await site.stored()
        backlog = gateway.backlog()
        assert backlog >= devices.sent - before
        proxy.restore()
        remaining = []
        for share in (0.75, 0.5, 0.25):
            # The relay may still be starting: it applies as soon as its bridge port is open.
            def applied(share: float = share) -> bool:
                return gateway.backlog() <= backlog * share

            await until(applied, 60, f"applied to {share}")
            relay.kill()
            remaining.append(gateway.backlog())
            relay.spawn()
        assert all(r > 0 for r in remaining), f"killed after the catch-up ended: {remaining}"
        await asyncio.to_thread(relay.wait_ready, 30)
        await site.assert_exactly_once()
        assert relay.kills == 3


# -- 4. a half-open link -----------------------------------------------------------------------
HEARTBEAT_S: Final = 0.5


@pytest.mark.timeout(150)
async def test_a_half_open_link_is_found_by_heartbeats_and_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    """The link stops carrying anything in both directions and nothing closes: each end
    finds it silent within three heartbeats, the gateway reconnects once the network
    is back, and what was sent meanwhile (and what was in flight) arrives once."""
    proxy = LinkProxy()
    settings: dict[str, str | int | float] = {"bridge_heartbeat_s": HEARTBEAT_S, **SMALL_WINDOW}
    async with hotel(tmp_path, mosquitto, settings=settings, proxy=proxy) as site:
        relay, gateway, devices = site.relay, site.gateway, site.devices
        await devices.report(readings=50, door_events=20)
        await site.settled()

        before = devices.sent
        reporting = asyncio.create_task(devices.report(readings=300, door_events=100))
        watchers: list[asyncio.Future[float]] = []
        try:
            # Traffic flows, and then the link goes silent with batches in flight.
            await until(lambda: gateway.committed() >= before + 100, 30, "streaming")
            relay_timeouts = relay.logged("closed: peer_timeout")
            gateway_timeouts = gateway.logged("bridge closed: peer_timeout")
            unreachable = gateway.logged("cannot reach the relay")
            proxy.blackhole()
            silent_since = time.time()
            # Watched from a thread of its own: this loop is busy with the devices.
            watchers.append(
                asyncio.ensure_future(
                    asyncio.to_thread(
                        seconds_until, lambda: relay.logged("closed: peer_timeout") > relay_timeouts
                    )
                )
            )
            await reporting
            # And more while the link is dead.
            await devices.report(readings=100, door_events=40, breach_every=10)
            relay_took = await watchers[0]
        finally:
            reporting.cancel()
            await asyncio.gather(reporting, *watchers, return_exceptions=True)
        await until(
            lambda: gateway.logged("bridge closed: peer_timeout") > gateway_timeouts, 10, "gateway"
        )
        # Three heartbeats of silence, none early, plus a busy machine's delay.
        bound = 3 * HEARTBEAT_S + 2.0
        assert relay_took <= bound, f"the relay took {relay_took:.2f} s to find the dead link"
        assert _silence(relay.tail(100_000)) >= 3 * HEARTBEAT_S
        # The gateway finds it as soon, then waits out its close handshake (its
        # connect_timeout_s) on a link that answers nothing, and only then logs it.
        gateway_took = (
            gateway.logged_at("bridge closed: peer_timeout", gateway_timeouts) - silent_since
        )
        assert gateway_took <= bound + 2.0, f"the gateway took {gateway_took:.2f} s"
        assert _silence(gateway.process.log_tail()) >= 3 * HEARTBEAT_S
        # A new connection into the dead network gives up too, within its own timeout.
        await until(lambda: gateway.logged("cannot reach the relay") > unreachable, 10, "dialled")
        await site.stored()
        assert gateway.backlog() > 0
        assert relay.logged("closed: peer_timeout") == relay_timeouts + 1

        opens = gateway.opens()
        proxy.restore()
        await until(lambda: gateway.opens() > opens, 30, "a new bridge")
        await site.assert_exactly_once()
