"""Translation between the gateway's domain records and the shared protobuf messages.

Used by the store (outbox events) and the LAN API; nothing else builds
`common.v1` messages from domain records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bellhop.common.v1 import common_pb2 as pb
from bellhop_bridge.desired import Result
from bellhop_devices.messages import DeviceKind, EventKind
from google.protobuf import struct_pb2, timestamp_pb2

from bellhop_edge.core.model import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    CommandResult,
    CommandStatus,
    Connectivity,
    DesiredState,
    Device,
    DeviceEvent,
    ReportedState,
    Room,
    TelemetryPoint,
)

DEVICE_KINDS = {kind: pb.DeviceKind.Value(f"DEVICE_KIND_{kind.name}") for kind in DeviceKind}
DEVICE_KINDS_BACK = {v: k for k, v in DEVICE_KINDS.items()}
EVENT_KINDS = {kind: pb.EventKind.Value(f"EVENT_KIND_{kind.name}") for kind in EventKind}
ALERT_KINDS = {kind: pb.AlertKind.Value(f"ALERT_KIND_{kind.name}") for kind in AlertKind}
ALERT_SEVERITIES = {s: pb.AlertSeverity.Value(f"ALERT_SEVERITY_{s.name}") for s in AlertSeverity}
ALERT_STATES = {s: pb.AlertState.Value(f"ALERT_STATE_{s.name}") for s in AlertState}
ALERT_STATES_BACK = {v: k for k, v in ALERT_STATES.items()}
COMMAND_STATUSES = {s: pb.CommandStatus.Value(f"COMMAND_STATUS_{s.name}") for s in CommandStatus}
CONNECTIVITY = {
    Connectivity.UNKNOWN: pb.CONNECTIVITY_UNSPECIFIED,
    Connectivity.ONLINE: pb.CONNECTIVITY_ONLINE,
    Connectivity.OFFLINE: pb.CONNECTIVITY_OFFLINE,
}


def ts(ms: int | None) -> timestamp_pb2.Timestamp | None:
    if ms is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(ms)
    return stamp


def struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if values is None:
        return None
    message = struct_pb2.Struct()
    message.update(dict(values))
    return message


def room(r: Room) -> pb.Room:
    return pb.Room(room_id=r.room_id, name=r.name, floor=r.floor)


def device(d: Device) -> pb.Device:
    return pb.Device(
        device_id=d.device_id,
        room_id=d.room_id or "",
        kind=DEVICE_KINDS[d.kind] if d.kind else pb.DEVICE_KIND_UNSPECIFIED,
        registered=d.registered,
        connectivity=CONNECTIVITY[d.connectivity],
        last_seen=ts(d.last_seen),
        firmware=d.firmware or "",
    )


def reported(s: ReportedState) -> pb.ReportedState:
    return pb.ReportedState(
        device_id=s.device_id,
        version=s.version,
        values=struct(s.values),
        updated_at=ts(s.updated_at),
    )


def desired(s: DesiredState) -> pb.DesiredState:
    return pb.DesiredState(
        device_id=s.device_id,
        version=s.version,
        values=struct(s.values),
        updated_at=ts(s.updated_at),
        updated_by=s.updated_by,
        fields={
            name: pb.DesiredField(
                set_at=ts(i.set_at_ms),
                set_by=i.by,
                safety=i.safety,
                safety_until=ts(i.safety_until_ms),
                removed=i.value is None,
            )
            for name, i in s.fields.items()
        },
        outcomes=[
            pb.DesiredOutcome(
                field=o.field,
                applied=o.result is Result.APPLIED,
                reason=o.reason.value,
                remote_value=value(o.remote_value),
                local_value=value(o.local_value),
            )
            for o in s.outcomes
        ],
        change_id=s.change_id,
    )


def value(v: Any) -> struct_pb2.Value:
    """One JSON value as protobuf's `Value` (None is null)."""
    message = struct_pb2.Struct()
    message.update({"v": v})
    return message.fields["v"]


def telemetry(p: TelemetryPoint) -> pb.TelemetryPoint:
    return pb.TelemetryPoint(device_id=p.device_id, metric=p.metric, ts=ts(p.ts), value=p.value)


def event(e: DeviceEvent) -> pb.DeviceEvent:
    return pb.DeviceEvent(
        device_id=e.device_id, kind=EVENT_KINDS[e.kind], ts=ts(e.ts), data=struct(e.data)
    )


def alert(a: Alert) -> pb.Alert:
    return pb.Alert(
        alert_id=a.alert_id,
        kind=ALERT_KINDS[a.kind],
        severity=ALERT_SEVERITIES[a.severity],
        state=ALERT_STATES[a.state],
        device_id=a.device_id,
        room_id=a.room_id or "",
        message=a.message,
        raised_at=ts(a.raised_at),
        acknowledged_at=ts(a.acknowledged_at),
        acknowledged_by=a.acknowledged_by or "",
        note=a.note or "",
        cleared_at=ts(a.cleared_at),
    )


def command_result(r: CommandResult) -> pb.CommandResult:
    return pb.CommandResult(
        command_id=r.command_id,
        device_id=r.device_id,
        status=COMMAND_STATUSES[r.status],
        result=struct(r.result),
        error=r.error or "",
        completed_at=ts(r.completed_at),
    )
