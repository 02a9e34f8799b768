"""One demo hotel: its broker, its gateway (enrolled with the relay) and its simulated rooms.

Everything the story asks of the hotel goes through the gateway's LAN API
(gRPC, with a staff token the gateway minted), as a front-desk app would,
except one read: how many of the edge's outbox events lie past the relay's
acknowledged positions, counted on the gateway's SQLite (read-only), which
the LAN API does not say.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from bellhop_cli.demo.narration import say

__all__ = ["DemoHotel"]

# The simulated devices that report a temperature (thermostats, environment sensors).
TEMPERATURE_KINDS: Final = frozenset({"thermostat", "environment_sensor"})
# The story's gateways come back within two seconds of the relay.
BRIDGE: Final = {"reconnect_min_s": 0.2, "reconnect_max_s": 2.0}
# A device gives its goodbye 5 s, then is cancelled.
DEVICES_STOP_S: Final = 8.0


T = TypeVar("T")


async def _in_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`call` in a thread, finished even when the caller is cancelled meanwhile (a broker
    started after its stop would outlive the demo)."""
    done = asyncio.ensure_future(asyncio.to_thread(call, *args, **kwargs))
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        await done
        raise


class DemoHotel:
    """Start with `start(relay_url, token)`, stop with `close()` (safe at any point)."""

    def __init__(
        self, *, label: str, hotel_id: str, workdir: Path, rooms: int, interval: float
    ) -> None:
        from bellhop_devices.sim import layout

        self.label, self.hotel_id = label, hotel_id
        self.workdir, self.interval = workdir, interval
        self.specs = layout(rooms)
        self.broker: Any = None
        self.gateway: Any = None
        self.sim: Any = None
        self.stub: Any = None
        self._channel: Any = None
        self._auth: tuple[tuple[str, str], ...] = ()
        self._watch: asyncio.Task[None] | None = None

    def say(self, text: str) -> None:
        say(f"[{self.label}] {text}")

    @property
    def devices(self) -> list[str]:
        return [s.device_id for s in self.specs]

    def device(self, kind: str, room: str = "101") -> str:
        return next(s.device_id for s in self.specs if s.kind.value == kind and s.room_id == room)

    def temperature_devices(self) -> list[str]:
        return [s.device_id for s in self.specs if s.kind.value in TEMPERATURE_KINDS]

    # -- start and stop ---------------------------------------------------------------------
    async def start(self, relay_url: str, token: str) -> None:
        import grpc
        from bellhop.lan.v1 import lan_pb2_grpc
        from bellhop_devices.sim import Broker, DeviceSpec, SimulatedHotel, floor_of
        from bellhop_edge.auth import LocalTokens, Role
        from bellhop_edge.bridge.identity import enrol
        from bellhop_edge.config import load_config
        from bellhop_edge.gateway import Gateway
        from bellhop_edge.localbroker import MosquittoBroker, local_broker

        (self.workdir / "broker").mkdir(parents=True, exist_ok=True)
        self.broker = broker = local_broker(self.workdir / "broker")
        gateway_creds = broker.add_gateway(self.hotel_id)
        device_creds = broker.add_devices(self.hotel_id, self.devices)
        await _in_thread(broker.start)
        kind = (
            "Mosquitto with per-device credentials and ACL"
            if isinstance(broker, MosquittoBroker)
            else "embedded amqtt (Mosquitto not installed; loopback, anonymous)"
        )
        self.say(f"broker: {kind} on {broker.host}:{broker.port}")
        rooms = sorted({s.room_id for s in self.specs if s.room_id})
        config = load_config(
            overrides={
                "hotel_id": self.hotel_id,
                "data_dir": str(self.workdir / "edge"),
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": gateway_creds.username if gateway_creds else None,
                    "password": gateway_creds.password if gateway_creds else None,
                },
                "api": {"listen": "127.0.0.1:0"},
                "liveness": {"heartbeat_timeout_s": max(3 * self.interval, 3.0)},
                "bridge": BRIDGE,
                "rooms": [{"room_id": r, "name": f"Room {r}", "floor": floor_of(r)} for r in rooms],
                "devices": [
                    {"device_id": s.device_id, "room_id": s.room_id, "kind": s.kind.value}
                    for s in self.specs
                ],
            }
        )
        # What `bellhop edge enrol --config ... --relay URL --token -` runs.
        identity = await _in_thread(
            enrol, config.data_dir, relay_url=relay_url, token=token, name=f"{self.label}-gw"
        )
        keys = identity.directory(config.data_dir)
        self.say(
            f"enrolled as gateway {identity.gateway_id} (as `bellhop edge enrol` does: a key"
            f" made here proves the one-time token); key and identity in {keys}"
        )
        self.gateway = Gateway(config)
        await self.gateway.__aenter__()
        self.database = config.database_path
        self.say(
            f"gateway: {len(rooms)} rooms, {len(self.specs)} devices, SQLite at"
            f" {config.database_path}, LAN API on 127.0.0.1:{self.gateway.api_port}"
        )
        staff = LocalTokens(config.tokens_path).create("front-desk", Role.STAFF)
        self._auth = (("authorization", f"Bearer {staff}"),)
        self.sim = SimulatedHotel(
            hotel_id=self.hotel_id,
            broker=Broker(broker.host, broker.port),
            devices=[
                DeviceSpec(s.device_id, s.room_id, s.kind, c.username, c.password)
                if (c := device_creds.get(s.device_id))
                else s
                for s in self.specs
            ],
            interval_s=self.interval,
        )
        self.sim.start()
        self._channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.gateway.api_port}")
        self.stub = lan_pb2_grpc.LanServiceStub(self._channel)
        self._watch = asyncio.create_task(self._watch_alerts(), name=f"demo-{self.label}-alerts")

    async def close(self) -> None:
        """The gateway drains its writer first, then the devices say goodbye, then the broker."""
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
        if self.gateway is not None:
            await self.gateway.close()
        if self.sim is not None:
            await self._stop_devices()
        if self.broker is not None:
            await asyncio.to_thread(self.broker.stop)

    async def _stop_devices(self) -> None:
        """Each device says goodbye and disconnects; the demo waits a bounded time.

        A device's stop can wait forever: when its publish loop is cancelled just as a
        QoS 1 publish is confirmed, Python 3.11's `asyncio.wait_for` (in aiomqtt) drops
        the cancellation and the loop runs on, and a stop awaiting that task cannot be
        cancelled either. So the stop runs as a task of its own, left behind past the
        bound; `asyncio.run` cancels what is left when the demo ends, which ends it.
        """
        stopping = asyncio.create_task(self.sim.stop(), name=f"demo-{self.label}-devices-stop")
        done, _ = await asyncio.wait({stopping}, timeout=DEVICES_STOP_S)
        if not done:
            self.say(f"a simulated device had not stopped within {DEVICES_STOP_S:g} s: left behind")
        elif (error := stopping.exception()) is not None:
            self.say(f"the simulated devices' stop failed: {error!r}")

    # -- the LAN API ------------------------------------------------------------------------
    async def _watch_alerts(self) -> None:
        from bellhop.lan.v1 import lan_pb2
        from bellhop_edge.convert import ALERT_KINDS, ALERT_STATES

        kinds = {v: k.value for k, v in ALERT_KINDS.items()}
        states = {v: k.value for k, v in ALERT_STATES.items()}
        stream = self.stub.WatchEvents(lan_pb2.WatchEventsRequest(), metadata=self._auth)
        async for event in stream:
            if event.HasField("alert"):
                a = event.alert
                self.say(
                    f"LAN live: ALERT {states[a.state]}: {kinds[a.kind]} on {a.device_id}"
                    f" (room {a.room_id}): {a.message}"
                )

    async def status(self) -> Any:
        from bellhop.lan.v1 import lan_pb2

        request = lan_pb2.GetGatewayStatusRequest()
        return await self.stub.GetGatewayStatus(request, metadata=self._auth, timeout=10)

    async def send_command(
        self, device_id: str, name: str, params: dict[str, Any], command_id: str
    ) -> Any:
        from bellhop.lan.v1 import lan_pb2
        from google.protobuf import struct_pb2

        values = struct_pb2.Struct()
        values.update(params)
        request = lan_pb2.SendCommandRequest(
            device_id=device_id, name=name, params=values, command_id=command_id
        )
        return (await self.stub.SendCommand(request, metadata=self._auth, timeout=15)).result

    async def alert(self, alert_id: str) -> Any:
        """The alert as ListAlerts shows it (None: not listed)."""
        from bellhop.lan.v1 import lan_pb2

        request = lan_pb2.ListAlertsRequest(limit=1000)
        listed = await self.stub.ListAlerts(request, metadata=self._auth, timeout=10)
        return next((a for a in listed.alerts if a.alert_id == alert_id), None)

    async def points(self, device_id: str, metric: str, start_ms: int, end_ms: int) -> int:
        """How many points of the metric the gateway holds in `[start, end)`."""
        from bellhop.lan.v1 import lan_pb2
        from google.protobuf import timestamp_pb2

        start, end = timestamp_pb2.Timestamp(), timestamp_pb2.Timestamp()
        start.FromMilliseconds(start_ms)
        end.FromMilliseconds(end_ms)
        request = lan_pb2.QueryTelemetryRequest(
            device_id=device_id, metric=metric, start=start, end=end, limit=10_000
        )
        answer = await self.stub.QueryTelemetry(request, metadata=self._auth, timeout=10)
        return len(answer.points)

    # -- scenario hooks -----------------------------------------------------------------------
    def leak_gas(self, device_id: str, ppm: float) -> None:
        """From the sensor's next reading the air holds `ppm` of gas (0 ends the leak)."""
        from bellhop_devices.sim.models import GasSensorModel

        model = self.sim.devices[device_id].model
        assert isinstance(model, GasSensorModel)
        model.leak(ppm)

    # -- the outbox against the relay ----------------------------------------------------------
    def outbox_newest(self) -> dict[int, int]:
        """Each lane's newest event in the edge's outbox (0: none)."""
        with contextlib.closing(self._outbox()) as db:
            rows = db.execute("SELECT lane, max(seq) FROM outbox GROUP BY lane").fetchall()
        return {int(lane): int(seq) for lane, seq in rows}

    def outbox_between(self, after: dict[int, int], upto: dict[int, int]) -> int:
        """Events of each lane above `after[lane]` and at most `upto[lane]`."""
        with contextlib.closing(self._outbox()) as db:
            return sum(
                int(
                    db.execute(
                        "SELECT count(*) FROM outbox WHERE lane = ? AND seq > ? AND seq <= ?",
                        (lane, after.get(lane, 0), top),
                    ).fetchone()[0]
                )
                for lane, top in upto.items()
            )

    def _outbox(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10)
