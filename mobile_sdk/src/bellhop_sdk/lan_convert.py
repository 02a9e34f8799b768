"""The gateway's protobuf messages as the SDK's models (the LAN path's half of the mapping),
and its status codes as the SDK's errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import grpc
from bellhop.common.v1 import common_pb2 as pb
from bellhop.lan.v1 import lan_pb2
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

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
    FleetCommand,
    FleetTarget,
    Freshness,
    Path,
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

__all__ = [
    "STATUS_ERRORS",
    "ack_outcome_of",
    "alert_of",
    "command_of",
    "desired_of",
    "device_of",
    "duration_of",
    "event_device",
    "event_of",
    "fleet_of",
    "fleet_target_of",
    "lan_error",
    "listed_devices_of",
    "looked_up_of",
    "opt_time_of",
    "points_of",
    "read_time",
    "stamp_of",
    "struct_of",
    "time_of",
    "value_of",
    "values_of",
]

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
# An older gateway does not say what an acknowledgement did; its answer's alert
# is acknowledged either way.
_ACK_OUTCOMES: Final = {
    lan_pb2.ACK_OUTCOME_UNSPECIFIED: AckResult.ACKNOWLEDGED,
    lan_pb2.ACK_OUTCOME_ACKNOWLEDGED: AckResult.ACKNOWLEDGED,
    lan_pb2.ACK_OUTCOME_ALREADY_ACKNOWLEDGED: AckResult.ALREADY_ACKNOWLEDGED,
    lan_pb2.ACK_OUTCOME_ALREADY_CLEARED: AckResult.ALREADY_CLEARED,
}

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


def enum_name(value: int, enum: Any, prefix: str) -> str:
    """`DEVICE_KIND_THERMOSTAT` -> "thermostat": the names the cloud uses."""
    return str(enum.Name(value)).removeprefix(prefix).lower()


def time_of(stamp: timestamp_pb2.Timestamp) -> datetime:
    return from_ms(stamp.seconds * 1000 + stamp.nanos // 1_000_000)


def opt_time_of(message: Any, name: str) -> datetime | None:
    return time_of(getattr(message, name)) if message.HasField(name) else None


def value_of(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return plain(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return values_of(value.struct_value)
    if kind == "list_value":
        return [value_of(v) for v in value.list_value.values]
    return None


def values_of(message: struct_pb2.Struct) -> dict[str, Any]:
    return {key: value_of(value) for key, value in message.fields.items()}


def struct_of(values: Mapping[str, Any] | None) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if values:
        message.update(dict(values))
    return message


def duration_of(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(seconds * 1e9))
    return message


def stamp_of(moment: datetime) -> timestamp_pb2.Timestamp:
    message = timestamp_pb2.Timestamp()
    message.FromDatetime(utc_ms(moment))
    return message


def read_time() -> datetime:
    return utc_ms(datetime.now(UTC))


def device_of(hotel_id: str, answer: lan_pb2.GetDeviceResponse) -> Device:
    return _device(hotel_id, answer.device, answer)


def listed_devices_of(hotel_id: str, answer: lan_pb2.ListDevicesResponse) -> list[Device] | None:
    """A ListDevices answer asked with `include_state` as Devices, or None when it carries
    no state (a gateway that predates the field) and each device must be read."""
    if answer.devices and len(answer.states) != len(answer.devices):
        return None
    out = []
    for d, state in zip(answer.devices, answer.states, strict=True):
        if state.device_id != d.device_id:
            return None
        out.append(_device(hotel_id, d, state))
    return out


def _device(
    hotel_id: str,
    d: pb.Device,
    answer: lan_pb2.GetDeviceResponse | lan_pb2.ListedDeviceState,
) -> Device:
    now = read_time()
    online = d.connectivity == pb.CONNECTIVITY_ONLINE
    last_seen = opt_time_of(d, "last_seen")
    # Online: the gateway hears the device, its state is current now. Offline:
    # true as of the last contact, and no longer current since then.
    since = None if online else (last_seen or now)
    freshness = Freshness(Path.LAN, now if online else (last_seen or now), since)
    reported = answer.reported if answer.HasField("reported") else None
    desired = (
        desired_of(hotel_id, answer.desired, freshness) if answer.HasField("desired") else None
    )
    return Device(
        hotel_id=hotel_id,
        device_id=d.device_id,
        room_id=d.room_id or None,
        kind=enum_name(d.kind, pb.DeviceKind, "DEVICE_KIND_"),
        online=online,
        last_seen=last_seen,
        reported=values_of(reported.values) if reported is not None else {},
        freshness=freshness,
        firmware=d.firmware or None,
        registered=d.registered,
        reported_at=opt_time_of(reported, "updated_at") if reported is not None else None,
        reported_version=reported.version if reported is not None else None,
        desired=desired,
        delta=values_of(answer.delta),
    )


def desired_of(
    hotel_id: str, s: pb.DesiredState, freshness: Freshness | None = None
) -> DesiredState:
    return DesiredState(
        hotel_id=hotel_id,
        device_id=s.device_id,
        version=s.version,
        values=values_of(s.values),
        freshness=freshness or Freshness(Path.LAN, read_time()),
        updated_at=opt_time_of(s, "updated_at"),
        updated_by=s.updated_by or None,
        change_id=s.change_id or None,
        outcomes=tuple(
            DesiredOutcome(
                o.field,
                o.applied,
                o.reason,
                value_of(o.remote_value) if o.HasField("remote_value") else None,
                value_of(o.local_value) if o.HasField("local_value") else None,
            )
            for o in s.outcomes
        ),
    )


def command_of(
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
        freshness=Freshness(Path.LAN, read_time()),
        params=dict(params or {}),
        result=values_of(r.result) if r.HasField("result") else None,
        error=r.error or None,
        completed_at=opt_time_of(r, "completed_at"),
    )


def alert_of(hotel_id: str, a: pb.Alert) -> Alert:
    return Alert(
        hotel_id=hotel_id,
        alert_id=a.alert_id,
        kind=enum_name(a.kind, pb.AlertKind, "ALERT_KIND_"),
        severity=enum_name(a.severity, pb.AlertSeverity, "ALERT_SEVERITY_"),
        state=_ALERT_STATE.get(a.state, AlertState.RAISED),
        device_id=a.device_id or None,
        room_id=a.room_id or None,
        message=a.message,
        raised_at=time_of(a.raised_at),
        freshness=Freshness(Path.LAN, read_time()),
        acknowledged_at=opt_time_of(a, "acknowledged_at"),
        acknowledged_by=a.acknowledged_by or None,
        note=a.note or None,
        cleared_at=opt_time_of(a, "cleared_at"),
    )


def lan_error(exc: grpc.RpcError) -> BellhopError:
    """The SDK error for a failed call: the status name as `code`, the gateway's message."""
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else grpc.StatusCode.UNKNOWN
    message = (exc.details() if isinstance(exc, grpc.aio.AioRpcError) else None) or str(code)
    kind = STATUS_ERRORS.get(code, BellhopError)
    return kind(message, code=code.name, path=Path.LAN)


def looked_up_of(hotel_id: str, answer: lan_pb2.GetCommandResponse) -> Command:
    """A command from the gateway's history, with what was asked and by whom."""
    asked = answer.command
    found = command_of(hotel_id, answer.result, asked.name, values_of(asked.params))
    return dataclasses.replace(
        found,
        requested_at=opt_time_of(answer, "created_at"),
        expires_at=opt_time_of(asked, "expires_at"),
        requested_by=answer.requested_by or None,
    )


def ack_outcome_of(
    hotel_id: str, alert_id: str, answer: lan_pb2.AcknowledgeAlertResponse
) -> AckOutcome:
    alert = alert_of(hotel_id, answer.alert)
    outcome = _ACK_OUTCOMES.get(answer.outcome, AckResult.ACKNOWLEDGED)
    return AckOutcome(hotel_id, alert_id, outcome, alert.freshness, alert)


def fleet_target_of(target: FleetTarget) -> lan_pb2.FleetTarget:
    return lan_pb2.FleetTarget(
        room_ids=list(target.room_ids),
        floors=list(target.floors),
        kinds=[pb.DeviceKind.Value(f"DEVICE_KIND_{k.upper()}") for k in target.kinds],
        device_ids=list(target.device_ids),
        all_devices=target.all_devices,
    )


def fleet_of(
    hotel_id: str,
    answer: lan_pb2.SendFleetCommandResponse,
    name: str,
    params: Mapping[str, Value] | None,
) -> FleetCommand:
    commands = tuple(command_of(hotel_id, r, name, params) for r in answer.results)
    return FleetCommand(
        hotel_id, answer.fleet_id, answer.targeted, commands, Freshness(Path.LAN, read_time())
    )


def points_of(answer: lan_pb2.QueryTelemetryResponse) -> list[TelemetryPoint]:
    return [TelemetryPoint(p.device_id, p.metric, time_of(p.ts), p.value) for p in answer.points]


def event_device(m: lan_pb2.WatchEventsResponse) -> str | None:
    """The device whose room an event needs (alerts carry their own room)."""
    which = m.WhichOneof("event")
    if which in ("state", "command_result", "status"):
        return str(getattr(m, which).device_id)
    return None


def event_of(
    hotel_id: str, m: lan_pb2.WatchEventsResponse, rooms: Mapping[str, str | None]
) -> Event | None:
    """A WatchEvents message as an SDK event; `rooms` maps `event_device(m)` to its room.

    Kinds: state, alert, command, device (connectivity). Telemetry and routine
    device events are left out, as on the cloud's stream.
    """
    which = m.WhichOneof("event")
    if which == "state":
        s = m.state
        updated = time_of(s.updated_at)
        data = {"device_id": s.device_id, "values": values_of(s.values), "updated_at": updated}
        key = state_key(s.device_id, updated)
        return Event("state", key, hotel_id, rooms.get(s.device_id), updated, data, Path.LAN)
    if which == "alert":
        a = alert_of(hotel_id, m.alert)
        at = a.cleared_at or a.acknowledged_at or a.raised_at
        key = alert_key(a.alert_id, a.state.value)
        return Event("alert", key, hotel_id, a.room_id, at, alert_data(a), Path.LAN)
    if which == "command_result":
        c = command_of(hotel_id, m.command_result)
        key = command_key(c.command_id, c.status.value)
        at = c.completed_at or read_time()
        room = rooms.get(c.device_id)
        return Event("command", key, hotel_id, room, at, command_data(c), Path.LAN)
    if which == "status":
        st = m.status
        online = st.connectivity == pb.CONNECTIVITY_ONLINE
        seen = opt_time_of(st, "ts")
        data = {"device_id": st.device_id, "online": online, "last_seen": seen}
        key = device_key(st.device_id, online, seen)
        at = seen or read_time()
        return Event("device", key, hotel_id, rooms.get(st.device_id), at, data, Path.LAN)
    return None
