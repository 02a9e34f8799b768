"""The LAN path: the hotel gateway's LanService over gRPC (grpc.aio).

Every call carries `authorization: Bearer <token>` metadata from a
`TokenSource` (a cloud access token the gateway verifies offline, or a
LAN-only `bht_` token) and a deadline. Status codes become the SDK's errors
one for one (`STATUS_ERRORS`, the inverse of the gateway's own table in
bellhop_edge/api/interceptor.py); UNAVAILABLE, and a deadline the gateway did
not answer within, are `Unreachable`: the signal to try the cloud.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import grpc
from bellhop.common.v1 import common_pb2 as pb
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bellhop_sdk.errors import (
    BellhopError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unreachable,
    Unsupported,
    raise_for,
)
from bellhop_sdk.models import (
    AckOutcome,
    AckResult,
    Alert,
    AlertState,
    Command,
    CommandStatus,
    DesiredOutcome,
    DesiredState,
    Device,
    Event,
    EventPage,
    FleetCommand,
    FleetTarget,
    Freshness,
    Gap,
    Hotel,
    Path,
    Room,
    TelemetryPoint,
    Value,
    alert_data,
    alert_key,
    command_data,
    command_key,
    device_key,
    from_ms,
    plain,
    state_key,
    utc_ms,
)
from bellhop_sdk.transport import DEFAULT_COMMAND_TIMEOUT_S, DEFAULT_TIMEOUT_S, TokenSource

__all__ = ["STATUS_ERRORS", "LanTransport", "lan_error"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")

# The gateway's status codes (bellhop_edge/api/interceptor.py STATUS_CODES), as errors.
STATUS_ERRORS: Final[dict[grpc.StatusCode, type[BellhopError]]] = {
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: Forbidden,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ABORTED: Conflict,
    grpc.StatusCode.ALREADY_EXISTS: Conflict,
    grpc.StatusCode.FAILED_PRECONDITION: Conflict,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequest,
    grpc.StatusCode.OUT_OF_RANGE: InvalidRequest,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNIMPLEMENTED: Unsupported,
    # The channel's own failures (refused, reset, no answer in time) and the gateway
    # saying it cannot serve: either way this path is not usable now.
    grpc.StatusCode.UNAVAILABLE: Unreachable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unreachable,
    grpc.StatusCode.CANCELLED: Unreachable,
    grpc.StatusCode.INTERNAL: ServerError,
    grpc.StatusCode.UNKNOWN: ServerError,
    grpc.StatusCode.DATA_LOSS: ServerError,
}
# What the gateway says when a watcher fell behind (bellhop_edge.bus.Lagging).
LAGGING: Final = "too slow to follow live events"
# A command's call waits this much longer than the device may take, for the round trip.
COMMAND_MARGIN_S: Final = 2.0
# An acknowledgement older than the call by more than this was someone else's.
ACK_SKEW_S: Final = 1.0
# Concurrent GetDevice calls when a device list is completed with each device's state.
READ_CONCURRENCY: Final = 16

_COMMAND_STATUS: Final = {
    pb.COMMAND_STATUS_SUCCEEDED: CommandStatus.SUCCEEDED,
    pb.COMMAND_STATUS_FAILED: CommandStatus.FAILED,
    pb.COMMAND_STATUS_TIMED_OUT: CommandStatus.TIMED_OUT,
    pb.COMMAND_STATUS_EXPIRED: CommandStatus.EXPIRED,
    pb.COMMAND_STATUS_PENDING: CommandStatus.PENDING,
}
_ALERT_STATE: Final = {
    pb.ALERT_STATE_RAISED: AlertState.RAISED,
    pb.ALERT_STATE_ACKNOWLEDGED: AlertState.ACKNOWLEDGED,
    pb.ALERT_STATE_CLEARED: AlertState.CLEARED,
}


def lan_error(exc: grpc.RpcError) -> BellhopError:
    """The SDK error for a failed call: the status name as `code`, the gateway's message."""
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
    message = (exc.details() if isinstance(exc, grpc.aio.AioRpcError) else None) or str(code)
    kind = STATUS_ERRORS.get(code, BellhopError)
    return kind(message, code=code.name, path=Path.LAN)


def _enum_name(value: int, enum: Any, prefix: str) -> str:
    """`DEVICE_KIND_THERMOSTAT` -> "thermostat": the names the cloud uses."""
    return str(enum.Name(value)).removeprefix(prefix).lower()


def _at(stamp: timestamp_pb2.Timestamp) -> datetime:
    return from_ms(stamp.seconds * 1000 + stamp.nanos // 1_000_000)


def _opt_at(message: Any, name: str) -> datetime | None:
    return _at(getattr(message, name)) if message.HasField(name) else None


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return plain(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return _values(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None


def _values(message: struct_pb2.Struct) -> dict[str, Any]:
    return {key: _value(value) for key, value in message.fields.items()}


def _struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if values:
        message.update(dict(values))
    return message


def _duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def _stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(utc_ms(moment))
    return message


def _now() -> datetime:
    return utc_ms(datetime.now(UTC))


class LanTransport:
    """The gateway's LAN API at `target` ("host:port"), authenticated by `tokens`.

    The gateway serves one hotel; its id is learned from GetGatewayStatus on
    first use, and a call naming another hotel raises `NotFound`. The channel
    is made on first use, in the running event loop.
    """

    def __init__(
        self, target: str, tokens: TokenSource, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._target = target
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: lan_pb2_grpc.LanServiceAsyncStub | None = None
        self._hotel_id: str | None = None

    @property
    def path(self) -> Path:
        return Path.LAN

    @property
    def target(self) -> str:
        return self._target

    def _lan(self) -> lan_pb2_grpc.LanServiceAsyncStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self._target)
            self._stub = lan_pb2_grpc.LanServiceStub(self._channel)
        return self._stub

    async def _call(
        self,
        method: Callable[[lan_pb2_grpc.LanServiceAsyncStub], Any],
        request: Any,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """One unary call with a deadline; after UNAUTHENTICATED, one retry with a new token."""
        stub = self._lan()
        deadline = self._timeout_s if timeout_s is None else timeout_s
        token = await self._tokens.token()
        for attempt in range(2):
            try:
                call: Awaitable[Any] = method(stub)(
                    request, metadata=(("authorization", f"Bearer {token}"),), timeout=deadline
                )
                return await call
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and attempt == 0:
                    token = await self._tokens.refresh()
                    continue
                raise lan_error(exc) from None
            except grpc.RpcError as exc:
                raise lan_error(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def probe(self, timeout_s: float = 0.5) -> bool:
        """The standard gRPC health check, which needs no token; never raises."""
        self._lan()
        assert self._channel is not None
        try:
            health = health_pb2_grpc.HealthStub(self._channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
        except Exception:  # a probe must never take the caller down
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def _check_hotel(self, hotel_id: str) -> None:
        if self._hotel_id is None:
            await self._status()
        if hotel_id != self._hotel_id:
            raise NotFound(
                f"this gateway serves hotel {self._hotel_id!r}, not {hotel_id!r}",
                code="NOT_FOUND",
                path=Path.LAN,
            )

    async def _status(self) -> lan_pb2.GetGatewayStatusResponse:
        status: lan_pb2.GetGatewayStatusResponse = await self._call(
            lambda s: s.GetGatewayStatus, lan_pb2.GetGatewayStatusRequest()
        )
        self._hotel_id = status.hotel_id
        return status

    # -- hotels, rooms, devices --------------------------------------------------------
    async def list_hotels(self) -> list[Hotel]:
        status = await self._status()
        return [self._hotel(status.hotel_id)]

    async def get_hotel(self, hotel_id: str) -> Hotel:
        await self._status()
        await self._check_hotel(hotel_id)
        return self._hotel(hotel_id)

    def _hotel(self, hotel_id: str) -> Hotel:
        now = _now()
        # The gateway holds no name or time zone of its hotel: the id stands for the name.
        return Hotel(hotel_id, hotel_id, Freshness(Path.LAN, now), last_seen=now)

    async def list_rooms(self, hotel_id: str) -> list[Room]:
        await self._check_hotel(hotel_id)
        answer = await self._call(lambda s: s.ListRooms, lan_pb2.ListRoomsRequest())
        now = _now()
        return [
            Room(hotel_id, r.room_id, r.name or r.room_id, r.floor, Freshness(Path.LAN, now))
            for r in answer.rooms
        ]

    async def list_devices(self, hotel_id: str, *, room_id: str | None = None) -> list[Device]:
        """Devices with their reported state: the list, then each device's state (the
        gateway's list carries no state), at most `READ_CONCURRENCY` reads at once."""
        await self._check_hotel(hotel_id)
        answer = await self._call(
            lambda s: s.ListDevices, lan_pb2.ListDevicesRequest(room_id=room_id or "")
        )
        limit = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(device_id: str) -> Device | None:
            async with limit:
                try:
                    return await self.get_device(hotel_id, device_id)
                except NotFound:  # removed between the list and the read
                    return None

        read = await asyncio.gather(*(one(d.device_id) for d in answer.devices))
        return [d for d in read if d is not None]

    async def get_device(self, hotel_id: str, device_id: str) -> Device:
        await self._check_hotel(hotel_id)
        answer = await self._call(
            lambda s: s.GetDevice, lan_pb2.GetDeviceRequest(device_id=device_id)
        )
        return self._device(hotel_id, answer)

    def _device(self, hotel_id: str, answer: lan_pb2.GetDeviceResponse) -> Device:
        d, now = answer.device, _now()
        online = d.connectivity == pb.CONNECTIVITY_ONLINE
        last_seen = _opt_at(d, "last_seen")
        # Online: the gateway hears the device, its state is current now. Offline:
        # true as of the last contact, and no longer current since then.
        since = None if online else (last_seen or now)
        freshness = Freshness(Path.LAN, now if online else (last_seen or now), since)
        reported = answer.reported if answer.HasField("reported") else None
        desired = (
            self._desired(hotel_id, answer.desired, freshness)
            if answer.HasField("desired")
            else None
        )
        return Device(
            hotel_id=hotel_id,
            device_id=d.device_id,
            room_id=d.room_id or None,
            kind=_enum_name(d.kind, pb.DeviceKind, "DEVICE_KIND_"),
            online=online,
            last_seen=last_seen,
            reported=_values(reported.values) if reported is not None else {},
            freshness=freshness,
            firmware=d.firmware or None,
            registered=d.registered,
            reported_at=_opt_at(reported, "updated_at") if reported is not None else None,
            reported_version=reported.version if reported is not None else None,
            desired=desired,
            delta=_values(answer.delta),
        )

    def _desired(
        self, hotel_id: str, s: pb.DesiredState, freshness: Freshness | None = None
    ) -> DesiredState:
        return DesiredState(
            hotel_id=hotel_id,
            device_id=s.device_id,
            version=s.version,
            values=_values(s.values),
            freshness=freshness or Freshness(Path.LAN, _now()),
            updated_at=_opt_at(s, "updated_at"),
            updated_by=s.updated_by or None,
            change_id=s.change_id or None,
            outcomes=tuple(
                DesiredOutcome(
                    o.field,
                    o.applied,
                    o.reason,
                    _value(o.remote_value) if o.HasField("remote_value") else None,
                    _value(o.local_value) if o.HasField("local_value") else None,
                )
                for o in s.outcomes
            ),
        )

    async def get_desired(self, hotel_id: str, device_id: str) -> DesiredState:
        device = await self.get_device(hotel_id, device_id)
        if device.desired is not None:
            return device.desired
        return DesiredState(hotel_id, device_id, 0, {}, Freshness(Path.LAN, _now()))

    async def set_desired(
        self,
        hotel_id: str,
        device_id: str,
        values: Mapping[str, Value],
        *,
        expected_version: int | None = None,
    ) -> DesiredState:
        """Set fields on the gateway; a version other than `expected_version` is `Conflict`."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.SetDesiredStateRequest(
            device_id=device_id, values=_struct(values), expected_version=expected_version or 0
        )
        answer = await self._call(lambda s: s.SetDesiredState, request)
        return self._desired(hotel_id, answer.desired)

    # -- commands ------------------------------------------------------------------------
    async def send_command(
        self,
        hotel_id: str,
        device_id: str,
        name: str,
        params: Mapping[str, Value] | None = None,
        *,
        command_id: str,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        wait: bool = True,
        ttl_s: float | None = None,
    ) -> Command:
        """Send and wait for the device's answer (the gateway always waits: `wait` is
        accepted for the protocol's sake). Raises CommandRejected / CommandTimedOut."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.SendCommandRequest(
            device_id=device_id,
            name=name,
            params=_struct(params),
            command_id=command_id,
            timeout=_duration(timeout_s),
        )
        if ttl_s is not None:
            request.ttl.CopyFrom(_duration(ttl_s))
        answer = await self._call(
            lambda s: s.SendCommand, request, timeout_s=timeout_s + COMMAND_MARGIN_S
        )
        command = self._command(hotel_id, answer.result, name, params)
        return raise_for(command)

    def _command(
        self,
        hotel_id: str,
        r: pb.CommandResult,
        name: str = "",
        params: Mapping[str, Value] | None = None,
    ) -> Command:
        return Command(
            hotel_id=hotel_id,
            command_id=r.command_id,
            device_id=r.device_id,
            name=name,
            status=_COMMAND_STATUS.get(r.status, CommandStatus.PENDING),
            freshness=Freshness(Path.LAN, _now()),
            params=dict(params or {}),
            result=_values(r.result) if r.HasField("result") else None,
            error=r.error or None,
            completed_at=_opt_at(r, "completed_at"),
        )

    async def get_command(self, hotel_id: str, command_id: str) -> Command:
        """The gateway has no command lookup: `Unsupported` (send again with the same id,
        which answers from the gateway's record without running it twice)."""
        raise Unsupported(
            "the gateway's LAN API cannot look up a command by id",
            code="UNSUPPORTED",
            path=Path.LAN,
        )

    async def send_fleet_command(
        self,
        hotel_id: str,
        target: FleetTarget,
        name: str,
        params: Mapping[str, Value] | None = None,
        *,
        fleet_id: str,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        ttl_s: float | None = None,
    ) -> FleetCommand:
        """The gateway sends to every device the target selects (the union of its lists)."""
        await self._check_hotel(hotel_id)
        kinds = [pb.DeviceKind.Value(f"DEVICE_KIND_{k.upper()}") for k in target.kinds]
        request = lan_pb2.SendFleetCommandRequest(
            target=lan_pb2.FleetTarget(
                room_ids=list(target.room_ids),
                floors=list(target.floors),
                kinds=kinds,
                device_ids=list(target.device_ids),
                all_devices=target.all_devices,
            ),
            name=name,
            params=_struct(params),
            fleet_id=fleet_id,
            timeout=_duration(timeout_s),
        )
        if ttl_s is not None:
            request.ttl.CopyFrom(_duration(ttl_s))
        # Devices are commanded a bounded number at a time: allow a few rounds.
        answer = await self._call(
            lambda s: s.SendFleetCommand, request, timeout_s=timeout_s * 4 + COMMAND_MARGIN_S
        )
        commands = tuple(self._command(hotel_id, r, name, params) for r in answer.results)
        return FleetCommand(
            hotel_id, answer.fleet_id, answer.targeted, commands, Freshness(Path.LAN, _now())
        )

    # -- alerts, telemetry, status --------------------------------------------------------
    async def list_alerts(
        self,
        hotel_id: str,
        *,
        active_only: bool = False,
        room_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        await self._check_hotel(hotel_id)
        states = [pb.ALERT_STATE_RAISED, pb.ALERT_STATE_ACKNOWLEDGED] if active_only else []
        request = lan_pb2.ListAlertsRequest(states=states, room_id=room_id or "", limit=limit)
        answer = await self._call(lambda s: s.ListAlerts, request)
        return [self._alert(hotel_id, a) for a in answer.alerts]

    def _alert(self, hotel_id: str, a: pb.Alert) -> Alert:
        return Alert(
            hotel_id=hotel_id,
            alert_id=a.alert_id,
            kind=_enum_name(a.kind, pb.AlertKind, "ALERT_KIND_"),
            severity=_enum_name(a.severity, pb.AlertSeverity, "ALERT_SEVERITY_"),
            state=_ALERT_STATE.get(a.state, AlertState.RAISED),
            device_id=a.device_id or None,
            room_id=a.room_id or None,
            message=a.message,
            raised_at=_at(a.raised_at),
            freshness=Freshness(Path.LAN, _now()),
            acknowledged_at=_opt_at(a, "acknowledged_at"),
            acknowledged_by=a.acknowledged_by or None,
            note=a.note or None,
            cleared_at=_opt_at(a, "cleared_at"),
        )

    async def acknowledge_alert(
        self, hotel_id: str, alert_id: str, *, note: str | None = None
    ) -> AckOutcome:
        """Acknowledge on the gateway.

        The gateway answers a second acknowledgement with the first one and does
        not say which it was, so the outcome is inferred: "already_acknowledged"
        when the alert read just before was acknowledged already, or when the
        answer's acknowledgement is older than this call (by more than
        `ACK_SKEW_S`, for clocks that disagree); "acknowledged" otherwise.
        """
        await self._check_hotel(hotel_id)
        before = {a.alert_id: a for a in await self.list_alerts(hotel_id, active_only=True)}
        sent_at = _now()
        request = lan_pb2.AcknowledgeAlertRequest(alert_id=alert_id, note=note or "")
        try:
            answer = await self._call(lambda s: s.AcknowledgeAlert, request)
        except Conflict as exc:  # the gateway's "already cleared"
            if "cleared" not in exc.message:
                raise
            return AckOutcome(
                hotel_id, alert_id, AckResult.ALREADY_CLEARED, Freshness(Path.LAN, _now())
            )
        alert = self._alert(hotel_id, answer.alert)
        earlier = before.get(alert_id)
        acked_at = alert.acknowledged_at
        already = (earlier is not None and earlier.state is AlertState.ACKNOWLEDGED) or (
            acked_at is not None and (sent_at - acked_at).total_seconds() > ACK_SKEW_S
        )
        outcome = AckResult.ALREADY_ACKNOWLEDGED if already else AckResult.ACKNOWLEDGED
        return AckOutcome(hotel_id, alert_id, outcome, alert.freshness, alert)

    async def telemetry(
        self,
        hotel_id: str,
        device_id: str,
        metric: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        """Points in [since, until), oldest first."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.QueryTelemetryRequest(device_id=device_id, metric=metric, limit=limit)
        if since is not None:
            request.start.CopyFrom(_stamp(since))
        if until is not None:
            request.end.CopyFrom(_stamp(until))
        answer = await self._call(lambda s: s.QueryTelemetry, request)
        return [TelemetryPoint(p.device_id, p.metric, _at(p.ts), p.value) for p in answer.points]

    async def gateway_backlog(self, hotel_id: str) -> int | None:
        await self._check_hotel(hotel_id)
        status = await self._status()
        return int(status.cloud_backlog)

    # -- events --------------------------------------------------------------------------
    async def events(
        self, hotel_id: str, *, room_id: str | None = None, after: str | None = None
    ) -> AsyncIterator[Event | Gap]:
        """The gateway's WatchEvents as SDK events, until the caller stops iterating.

        Kinds: state, alert, command, device (connectivity). Telemetry and routine
        device events are left out, as on the cloud's stream; the gateway has no
        desired-state events. `after` is ignored: the gateway keeps no log to
        resume from. Falling behind yields a `Gap` and the stream is opened again;
        losing the gateway raises `Unreachable`.
        """
        await self._check_hotel(hotel_id)
        rooms = await self._room_map()
        while True:
            call = None
            try:
                token = await self._tokens.token()
                call = self._lan().WatchEvents(
                    lan_pb2.WatchEventsRequest(room_id=room_id or ""),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
                async for message in call:
                    event = await self._event(hotel_id, message, rooms)
                    if event is not None:
                        yield event
                return  # the gateway ended the stream (it is stopping)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and LAGGING in (exc.details() or ""):
                    yield Gap("slow_consumer", _now(), Path.LAN)
                    continue
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    await self._tokens.refresh()
                    try:
                        await self._status()  # the new token works, or the error is the answer
                    except BellhopError:
                        raise lan_error(exc) from None
                    yield Gap("token_refreshed", _now(), Path.LAN)
                    continue
                raise lan_error(exc) from None
            finally:
                if call is not None:
                    call.cancel()

    async def _room_map(self) -> dict[str, str | None]:
        answer = await self._call(
            lambda s: s.ListDevices, lan_pb2.ListDevicesRequest(include_unknown=True)
        )
        return {d.device_id: d.room_id or None for d in answer.devices}

    async def _room_of(self, device_id: str, rooms: dict[str, str | None]) -> str | None:
        if device_id not in rooms:
            rooms.update(await self._room_map())
            rooms.setdefault(device_id, None)  # asked once per unknown device
        return rooms[device_id]

    async def _event(
        self, hotel_id: str, m: lan_pb2.WatchEventsResponse, rooms: dict[str, str | None]
    ) -> Event | None:
        which = m.WhichOneof("event")
        if which == "state":
            s = m.state
            updated = _at(s.updated_at)
            data = {"device_id": s.device_id, "values": _values(s.values), "updated_at": updated}
            room = await self._room_of(s.device_id, rooms)
            key = state_key(s.device_id, updated)
            return Event("state", key, hotel_id, room, updated, data, Path.LAN)
        if which == "alert":
            a = self._alert(hotel_id, m.alert)
            data = alert_data(a)
            at = a.cleared_at or a.acknowledged_at or a.raised_at
            key = alert_key(a.alert_id, a.state.value)
            return Event("alert", key, hotel_id, a.room_id, at, data, Path.LAN)
        if which == "command_result":
            c = self._command(hotel_id, m.command_result)
            data = command_data(c)
            room = await self._room_of(c.device_id, rooms)
            key = command_key(c.command_id, c.status.value)
            return Event("command", key, hotel_id, room, c.completed_at or _now(), data, Path.LAN)
        if which == "status":
            st = m.status
            online = st.connectivity == pb.CONNECTIVITY_ONLINE
            seen = _opt_at(st, "ts")
            data = {"device_id": st.device_id, "online": online, "last_seen": seen}
            room = await self._room_of(st.device_id, rooms)
            key = device_key(st.device_id, online, seen)
            return Event("device", key, hotel_id, room, seen or _now(), data, Path.LAN)
        return None  # telemetry and device events: not carried by either path's stream

    async def recent_events(
        self, hotel_id: str, *, limit: int = 100, after: str | None = None
    ) -> EventPage:
        raise Unsupported("the gateway keeps no event log", code="UNSUPPORTED", path=Path.LAN)

    async def aclose(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()
