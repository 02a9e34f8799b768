"""The hotel the bridge's fault tests run: Mosquitto, devices reporting over MQTT, a
real gateway process enrolled with a real relay process, and what each side holds
(tests/e2e/test_bridge_faults.py)."""

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
from bellhop.lan.v1 import lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role

from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.link_proxy import LinkProxy
from tests.support.mosquitto import Credentials, MosquittoBroker, device_client
from tests.support.relay_process import (
    RelayProcess,
    Tenant,
    enrol_gateway,
    identity,
)
from tests.support.waiting import eventually

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


def seconds_until(predicate: Callable[[], bool], timeout: float = 10) -> float:
    """In a thread: how long `predicate` took to hold, from now; TimeoutError after `timeout`."""
    started = time.monotonic()
    eventually(predicate, timeout, "the condition", every=0.005)
    return time.monotonic() - started


def silence(log: str) -> float:
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
class EdgeGateway:
    """`bellhop edge run` with its config in `workdir` (one room, `devices`, the `bridge`
    section given), its store read directly; also the backup tests' gateway
    (tests/e2e/test_backup_restore.py)."""

    def __init__(
        self,
        workdir: Path,
        mosquitto: MosquittoBroker,
        hotel_id: str,
        creds: Credentials,
        devices: Mapping[str, str],
        bridge: str,
    ) -> None:
        workdir.mkdir(parents=True)
        self.config = workdir / "edge.toml"
        self.lan_port = write_config(
            self.config,
            hotel_id=hotel_id,
            mosquitto=mosquitto,
            gateway=creds,
            devices=dict(devices),
            extra=bridge,
        )
        self.data_dir = workdir / "edge"
        self.process = EdgeProcess(self.config)
        self.database = self.process.database

    def query(self, sql: str) -> list[tuple[Any, ...]]:
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

    def backlog(self) -> int:
        """Outbox events the relay has not acknowledged yet, over both lanes."""
        rows = self.query(
            "SELECT count(*) FROM outbox, outbox_state WHERE"
            " (lane = 1 AND seq > last_acked_seq) OR (lane = 2 AND seq > last_acked_priority_seq)"
        )
        return int(rows[0][0]) if rows else 0

    def alerts(self) -> dict[str, tuple[Any, ...]]:
        rows = self.query("SELECT alert_id, kind, state, device_id, acknowledged_by FROM alerts")
        return {str(r[0]): tuple(r[1:]) for r in rows}


class Gateway(EdgeGateway):
    """The fault tests' gateway: its own MQTT account, small batches, a staff token, and
    what its database says."""

    def __init__(self, workdir: Path, mosquitto: MosquittoBroker, hotel_id: str) -> None:
        creds = mosquitto.add_gateway(hotel_id)
        super().__init__(workdir, mosquitto, hotel_id, creds, DEVICES, BRIDGE)
        self.token = LocalTokens(self.data_dir / "staff-tokens.json").create(STAFF, Role.STAFF)

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

    def committed(self) -> int:
        """Readings and device events the gateway has stored (each once, however delivered)."""
        points = self.query(
            "SELECT count(*) FROM (SELECT series_id, ts FROM telemetry_recent"
            " UNION SELECT series_id, ts FROM telemetry)"
        )
        events = self.query("SELECT count(*) FROM events")
        return (int(points[0][0]) if points else 0) + (int(events[0][0]) if events else 0)

    def events(self) -> list[tuple[Any, ...]]:
        """(device, kind, ts, data) of every device event, in the order the gateway stored them."""
        return self.query("SELECT device_id, kind, ts, data FROM events ORDER BY event_id")

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
