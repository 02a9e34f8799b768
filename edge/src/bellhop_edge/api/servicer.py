"""The LanService: a thin adapter between protobuf and the gateway's domain calls.

Handlers check the caller's role (set by `interceptor`), check and translate
the request (`validate`: every field, before the gateway sees it), call the
backend (the `Gateway`, seen through `LanBackend`) and translate the answer
back. They raise `EdgeError`s; the interceptor turns them into status codes.

Read your writes: a call answered is visible to every later call. Writes
change the in-memory model at once and reach SQLite behind (the store
writer batches them), so reads come from memory (devices, desired state,
the command book, the alert book) or, when they read SQLite (alert lists,
telemetry history), first wait for the writes submitted before them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol

from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc

from bellhop_edge import convert
from bellhop_edge.api import validate
from bellhop_edge.api.interceptor import principal
from bellhop_edge.auth import Role
from bellhop_edge.bus import EventBus, Lagging
from bellhop_edge.clock import now_ms
from bellhop_edge.commands import CommandService
from bellhop_edge.config import EdgeConfig
from bellhop_edge.core.alerts import AckOutcome, ack_outcome
from bellhop_edge.core.commands import (
    CommandRecord,
    CommandRequest,
    expiring_request,
    fleet_command_id,
    new_command_id,
)
from bellhop_edge.core.hotel import Hotel
from bellhop_edge.core.ingest import Ingest
from bellhop_edge.core.model import (
    Alert,
    AlertState,
    CommandResult,
    CommandStatus,
    ConnectivityChange,
    DesiredState,
    DeviceEvent,
    DeviceKind,
    GatewayStatus,
    LiveEvent,
    ReportedState,
    TelemetryPoint,
)
from bellhop_edge.errors import InvalidRequest, NotFound, Unavailable, UnknownAlertError
from bellhop_edge.store import EdgeStore, StoreWriter

__all__ = [
    "ACK_OUTCOMES",
    "SUBSCRIBED",
    "LanBackend",
    "LanServicer",
    "fleet_devices",
    "watch_event",
]


# A local safety override lasts at most this long when given a duration (a week).
SAFETY_MAX_S: Final = 7 * 86_400.0
# Initial metadata of WatchEvents, sent once the watcher is on the event bus.
SUBSCRIBED: Final = (("bellhop-subscribed", "1"),)
ACK_OUTCOMES: Final = {
    outcome: lan_pb2.AckOutcome.Value(f"ACK_OUTCOME_{outcome.name}") for outcome in AckOutcome
}


class LanBackend(Protocol):
    """What the LAN API needs of the gateway."""

    @property
    def config(self) -> EdgeConfig: ...

    @property
    def hotel(self) -> Hotel: ...

    @property
    def bus(self) -> EventBus: ...

    @property
    def store(self) -> EdgeStore: ...

    @property
    def writer(self) -> StoreWriter: ...

    @property
    def ingest(self) -> Ingest: ...

    @property
    def commands(self) -> CommandService: ...

    def set_desired(
        self, device_id: str, values: dict[str, Any], *, by: str, **options: Any
    ) -> DesiredState: ...

    async def send_command(self, request: CommandRequest, *, timeout: float) -> CommandRecord: ...

    async def send_fleet(
        self, requests: list[CommandRequest], *, timeout: float, max_in_flight: int
    ) -> list[CommandRecord]: ...

    def list_alerts(
        self, states: list[AlertState], room_id: str | None, limit: int
    ) -> list[Alert]: ...

    def acknowledge_alert(self, alert_id: str, *, by: str, note: str) -> Alert: ...

    async def query_telemetry(
        self, device_id: str, metric: str, start: int, end: int, limit: int
    ) -> list[TelemetryPoint]: ...

    def status(self) -> GatewayStatus: ...


def fleet_devices(
    hotel: Hotel,
    *,
    room_ids: list[str],
    floors: list[int],
    kinds: list[DeviceKind],
    device_ids: list[str],
    all_devices: bool,
) -> list[str]:
    """The registered devices a fleet target selects, in id order.

    Within one list a union, across the lists given an intersection (kinds
    [thermostat] and floors [3]: the thermostats on floor 3), as the relay
    selects; `all_devices` counts only when no list is given. An unknown
    device id is `NotFound` (from `Hotel.select`).
    """
    selections = [
        hotel.select(room_ids=room_ids) if room_ids else None,
        hotel.select(floors=floors) if floors else None,
        hotel.select(kinds=kinds) if kinds else None,
        hotel.select(device_ids=device_ids) if device_ids else None,
    ]
    given = [set(chosen) for chosen in selections if chosen is not None]
    if not given:
        return hotel.select(all_devices=True) if all_devices else []
    return sorted(set.intersection(*given))


def watch_event(event: LiveEvent) -> lan_pb2.WatchEventsResponse:
    """A live event as the WatchEvents stream carries it."""
    item = event.item
    if isinstance(item, TelemetryPoint):
        return lan_pb2.WatchEventsResponse(telemetry=convert.telemetry(item))
    if isinstance(item, ReportedState):
        return lan_pb2.WatchEventsResponse(state=convert.reported(item))
    if isinstance(item, DeviceEvent):
        return lan_pb2.WatchEventsResponse(device_event=convert.event(item))
    if isinstance(item, Alert):
        return lan_pb2.WatchEventsResponse(alert=convert.alert(item))
    if isinstance(item, CommandResult):
        return lan_pb2.WatchEventsResponse(command_result=convert.command_result(item))
    assert isinstance(item, ConnectivityChange)
    status = lan_pb2.DeviceStatusChange(
        device_id=item.device_id,
        connectivity=convert.CONNECTIVITY[item.connectivity],
        ts=convert.ts(item.ts),
    )
    return lan_pb2.WatchEventsResponse(status=status)


class LanServicer(lan_pb2_grpc.LanServiceServicer):
    def __init__(self, backend: LanBackend) -> None:
        self._gw = backend

    async def ListRooms(
        self, request: lan_pb2.ListRoomsRequest, context: Any
    ) -> lan_pb2.ListRoomsResponse:
        principal().require(Role.VIEWER, "reading rooms")
        rooms = sorted(self._gw.hotel.rooms.values(), key=lambda r: r.room_id)
        return lan_pb2.ListRoomsResponse(rooms=[convert.room(r) for r in rooms])

    async def ListDevices(
        self, request: lan_pb2.ListDevicesRequest, context: Any
    ) -> lan_pb2.ListDevicesResponse:
        principal().require(Role.VIEWER, "reading devices")
        hotel = self._gw.hotel
        devices = hotel.list_devices(
            validate.room_id(request.room_id), include_unknown=request.include_unknown
        )
        answer = lan_pb2.ListDevicesResponse(devices=[convert.device(d) for d in devices])
        if request.include_state:
            # From memory, as GetDevice reads it: one call instead of one per device.
            for d in devices:
                reported = hotel.reported.get(d.device_id)
                desired = hotel.desired.get(d.device_id)
                answer.states.append(
                    lan_pb2.ListedDeviceState(
                        device_id=d.device_id,
                        reported=convert.reported(reported) if reported else None,
                        desired=convert.desired(desired) if desired else None,
                        delta=convert.struct(hotel.delta(d.device_id)),
                    )
                )
        return answer

    async def GetDevice(
        self, request: lan_pb2.GetDeviceRequest, context: Any
    ) -> lan_pb2.GetDeviceResponse:
        principal().require(Role.VIEWER, "reading devices")
        hotel = self._gw.hotel
        device = hotel.device(validate.device_id(request.device_id))
        reported = hotel.reported.get(device.device_id)
        desired = hotel.desired.get(device.device_id)
        return lan_pb2.GetDeviceResponse(
            device=convert.device(device),
            reported=convert.reported(reported) if reported else None,
            desired=convert.desired(desired) if desired else None,
            delta=convert.struct(hotel.delta(device.device_id)),
        )

    async def SetDesiredState(
        self, request: lan_pb2.SetDesiredStateRequest, context: Any
    ) -> lan_pb2.SetDesiredStateResponse:
        who = principal()
        who.require(Role.STAFF, "changing desired state")
        if request.expected_version < 0:
            raise InvalidRequest(
                f"expected_version: must not be negative, got {request.expected_version}"
            )
        safety: dict[str, Any] = {}
        if request.safety_override:
            safety["safety"] = True
            if request.HasField("safety_for"):
                held = validate.duration(
                    request.safety_for, "safety_for", present=True, default=0, high=SAFETY_MAX_S
                )
                safety["safety_until"] = now_ms() + int(held * 1000)
        elif request.HasField("safety_for"):
            raise InvalidRequest("safety_for: only with safety_override")
        state = self._gw.set_desired(
            validate.device_id(request.device_id),
            validate.flat_values(request.values, "values"),
            by=who.subject,
            expected_version=request.expected_version,
            **safety,
        )
        return lan_pb2.SetDesiredStateResponse(desired=convert.desired(state))

    async def SendCommand(
        self, request: lan_pb2.SendCommandRequest, context: Any
    ) -> lan_pb2.SendCommandResponse:
        who = principal()
        who.require(Role.STAFF, "sending commands")
        ttl, timeout = self._ttl_and_timeout(request, context)
        command = expiring_request(
            device_id=validate.device_id(request.device_id),
            name=validate.name(request.name, "name"),
            params=validate.flat_values(request.params, "params"),
            ttl_s=ttl,
            command_id=validate.command_id(request.command_id),
            now=now_ms(),
            requested_by=who.subject,
        )
        record = await self._gw.send_command(command, timeout=timeout)
        return lan_pb2.SendCommandResponse(result=convert.command_result(record.result))

    async def SendFleetCommand(
        self, request: lan_pb2.SendFleetCommandRequest, context: Any
    ) -> lan_pb2.SendFleetCommandResponse:
        who = principal()
        who.require(Role.STAFF, "sending commands")
        name = validate.name(request.name, "name")
        params = validate.flat_values(request.params, "params")
        fleet_id = validate.command_id(request.fleet_id, "fleet_id", max_len=40) or new_command_id()
        config = self._gw.config.commands
        if request.max_in_flight < 0 or request.max_in_flight > config.max_in_flight:
            raise InvalidRequest(
                f"max_in_flight: must be 0 (the default) to {config.max_in_flight},"
                f" got {request.max_in_flight}"
            )
        target = request.target
        devices = fleet_devices(
            self._gw.hotel,
            room_ids=validate.room_ids(target.room_ids, "target.room_ids"),
            floors=list(target.floors),
            kinds=validate.enums(target.kinds, convert.DEVICE_KINDS_BACK, "target.kinds"),
            device_ids=validate.device_ids(target.device_ids, "target.device_ids"),
            all_devices=target.all_devices,
        )
        if not devices:
            raise NotFound("target: matches no registered device")
        ttl, timeout = self._ttl_and_timeout(request, context)
        now = now_ms()
        requests = [
            expiring_request(
                device_id=device_id,
                name=name,
                params=params,
                ttl_s=ttl,
                command_id=fleet_command_id(fleet_id, device_id),
                now=now,
                requested_by=who.subject,
            )
            for device_id in devices
        ]
        limit = request.max_in_flight or config.fleet_max_in_flight
        records = await self._gw.send_fleet(requests, timeout=timeout, max_in_flight=limit)
        statuses = Counter(r.result.status for r in records)
        return lan_pb2.SendFleetCommandResponse(
            fleet_id=fleet_id,
            targeted=len(records),
            succeeded=statuses[CommandStatus.SUCCEEDED],
            failed=statuses[CommandStatus.FAILED],
            timed_out=statuses[CommandStatus.TIMED_OUT],
            expired=statuses[CommandStatus.EXPIRED],
            results=[convert.command_result(r.result) for r in records],
        )

    async def GetCommand(
        self, request: lan_pb2.GetCommandRequest, context: Any
    ) -> lan_pb2.GetCommandResponse:
        principal().require(Role.VIEWER, "reading commands")
        command_id = validate.existing_command_id(request.command_id)
        record = self._gw.commands.lookup(command_id)
        if record is None:
            raise NotFound(f"no command {command_id!r} on this gateway")
        asked = record.request
        return lan_pb2.GetCommandResponse(
            command=common_pb2.Command(
                command_id=asked.command_id,
                device_id=asked.device_id,
                name=asked.name,
                params=convert.struct(asked.params),
                expires_at=convert.ts(asked.expires_at),
            ),
            result=convert.command_result(record.result),
            requested_by=asked.requested_by,
            created_at=convert.ts(record.created_at),
        )

    def _ttl_and_timeout(self, request: Any, context: Any) -> tuple[float, float]:
        """The command's ttl and how long to wait, within the caller's own deadline."""
        config = self._gw.config.commands
        ttl = validate.duration(
            request.ttl,
            "ttl",
            present=request.HasField("ttl"),
            default=config.default_ttl_s,
            high=config.max_ttl_s,
        )
        timeout = validate.duration(
            request.timeout,
            "timeout",
            present=request.HasField("timeout"),
            default=config.default_timeout_s,
            high=config.max_timeout_s,
        )
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining - 0.05, 0.01))
        return ttl, timeout

    async def ListAlerts(
        self, request: lan_pb2.ListAlertsRequest, context: Any
    ) -> lan_pb2.ListAlertsResponse:
        principal().require(Role.VIEWER, "reading alerts")
        states = validate.enums(request.states, convert.ALERT_STATES_BACK, "states")
        limit = validate.limit(request.limit, "limit", default=100, maximum=1000)
        await self._gw.writer.flush()  # the list is read from SQLite: see the module's doc
        alerts = self._gw.list_alerts(states, validate.room_id(request.room_id), limit)
        return lan_pb2.ListAlertsResponse(alerts=[convert.alert(a) for a in alerts])

    async def AcknowledgeAlert(
        self, request: lan_pb2.AcknowledgeAlertRequest, context: Any
    ) -> lan_pb2.AcknowledgeAlertResponse:
        who = principal()
        who.require(Role.STAFF, "acknowledging alerts")
        alert_id = validate.alert_id(request.alert_id)
        note = validate.note(request.note)
        # The book knows every open alert and the recently cleared ones; SQLite
        # the rest, which are cleared for good.
        alert = self._gw.ingest.alerts.get(alert_id) or self._gw.store.get_alert(alert_id)
        if alert is None:
            raise UnknownAlertError(alert_id)
        outcome = ack_outcome(alert)
        if outcome is AckOutcome.ACKNOWLEDGED:
            alert = self._gw.acknowledge_alert(alert_id, by=who.subject, note=note)
        return lan_pb2.AcknowledgeAlertResponse(
            alert=convert.alert(alert), outcome=ACK_OUTCOMES[outcome]
        )

    async def QueryTelemetry(
        self, request: lan_pb2.QueryTelemetryRequest, context: Any
    ) -> lan_pb2.QueryTelemetryResponse:
        principal().require(Role.VIEWER, "reading telemetry")
        device_id = validate.device_id(request.device_id)
        metric = validate.name(request.metric, "metric")
        start = validate.timestamp_ms(
            request.start, "start", present=request.HasField("start"), default=0
        )
        end = validate.timestamp_ms(
            request.end, "end", present=request.HasField("end"), default=2**62
        )
        if end < start:
            raise InvalidRequest("end: must not be before start")
        limit = validate.limit(request.limit, "limit", default=1000, maximum=10_000)
        points = await self._gw.query_telemetry(device_id, metric, start, end, limit)
        return lan_pb2.QueryTelemetryResponse(points=[convert.telemetry(p) for p in points])

    async def WatchEvents(
        self, request: lan_pb2.WatchEventsRequest, context: Any
    ) -> AsyncIterator[lan_pb2.WatchEventsResponse]:
        principal().require(Role.VIEWER, "watching events")
        subscription = self._gw.bus.subscribe(validate.room_id(request.room_id))
        try:
            # The watcher learns that every event published from now on reaches it (a
            # client handing over from the cloud counts from this moment).
            await context.send_initial_metadata(SUBSCRIBED)
            async for event in subscription:
                yield watch_event(event)
        except Lagging as exc:
            raise Unavailable(str(exc)) from None
        finally:
            self._gw.bus.unsubscribe(subscription)

    async def GetGatewayStatus(
        self, request: lan_pb2.GetGatewayStatusRequest, context: Any
    ) -> lan_pb2.GetGatewayStatusResponse:
        principal().require(Role.VIEWER, "reading gateway status")
        s = self._gw.status()
        return lan_pb2.GetGatewayStatusResponse(
            hotel_id=s.hotel_id,
            broker_connected=s.broker_connected,
            devices_online=s.devices_online,
            devices_total=s.devices_total,
            rejected=dict(s.rejected),
            accepted=s.accepted,
            started_at=convert.ts(s.started_at),
            cloud_bridge=s.cloud_bridge,
            cloud_last_close=s.cloud_last_close,
            cloud_backlog=s.cloud_backlog,
        )
