"""The gateway's protobuf messages as the SDK's models (the LAN path's half of the mapping)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bellhop.common.v1 import common_pb2 as pb
from bellhop.lan.v1 import lan_pb2
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from bellhop_sdk.models import (
    Alert,
    AlertState,
    Command,
    CommandStatus,
    DesiredOutcome,
    DesiredState,
    Device,
    Freshness,
    Path,
    Value,
    from_ms,
    plain,
    utc_ms,
)

__all__ = [
    "alert_of",
    "command_of",
    "desired_of",
    "device_of",
    "duration_of",
    "opt_time_of",
    "read_time",
    "stamp_of",
    "struct_of",
    "time_of",
    "value_of",
    "values_of",
]

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
    d, now = answer.device, read_time()
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
