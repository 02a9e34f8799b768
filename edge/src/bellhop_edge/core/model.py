"""Domain records of the edge gateway.

Plain frozen dataclasses shared by the store, the rules, the command
bookkeeping and the APIs; the gRPC servicer and the bridge translate them
to protobuf at their boundary. Times are Unix milliseconds (int).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bellhop_bridge.desired import FieldIntent, FieldOutcome
from bellhop_devices.messages import DeviceKind, EventKind

__all__ = [
    "Alert",
    "AlertKind",
    "AlertSeverity",
    "AlertState",
    "CommandResult",
    "CommandStatus",
    "Connectivity",
    "ConnectivityChange",
    "DesiredState",
    "Device",
    "DeviceEvent",
    "DeviceKind",
    "EventKind",
    "GatewayStatus",
    "LiveEvent",
    "LiveItem",
    "ReportedState",
    "Room",
    "TelemetryPoint",
]


class Connectivity(StrEnum):
    UNKNOWN = "unknown"
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Room:
    room_id: str
    name: str
    floor: int


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    room_id: str | None
    kind: DeviceKind | None
    # False for a device seen on the broker but never registered.
    registered: bool
    connectivity: Connectivity = Connectivity.UNKNOWN
    last_seen: int | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class ReportedState:
    device_id: str
    version: int
    values: Mapping[str, Any]
    updated_at: int


@dataclass(frozen=True, slots=True)
class DesiredState:
    device_id: str
    version: int
    values: Mapping[str, Any]
    updated_at: int
    updated_by: str
    # Per field: who set it and when, by the clock of the side that did; removed fields
    # too (docs/conflicts.md). Empty for a state written before fields were kept.
    fields: Mapping[str, FieldIntent] = field(default_factory=dict)
    outcomes: tuple[FieldOutcome, ...] = ()  # of the last change made through the cloud
    change_id: str = ""  # that change's id; empty when the last change was made here

    def intents(self) -> dict[str, FieldIntent]:
        """Each field's intent; a state from before fields were kept counts as set at once."""
        if self.fields:
            return dict(self.fields)
        return {
            k: FieldIntent(v, self.updated_at, self.updated_by or "unknown")
            for k, v in self.values.items()
        }


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    device_id: str
    metric: str
    ts: int
    value: float


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    device_id: str
    kind: EventKind
    ts: int
    data: Mapping[str, Any] = field(default_factory=dict)


class AlertKind(StrEnum):
    TEMPERATURE_OUT_OF_RANGE = "temperature_out_of_range"
    GAS = "gas"
    DOOR_LEFT_OPEN = "door_left_open"
    BREACH = "breach"
    BATTERY_LOW = "battery_low"
    DEVICE_OFFLINE = "device_offline"


class AlertSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    kind: AlertKind
    severity: AlertSeverity
    state: AlertState
    device_id: str
    room_id: str | None
    message: str
    raised_at: int
    acknowledged_at: int | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    cleared_at: int | None = None


class CommandStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    device_id: str
    status: CommandStatus
    result: Mapping[str, Any] | None = None
    error: str | None = None
    completed_at: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectivityChange:
    """A device went online or offline at `ts` (gateway time)."""

    device_id: str
    connectivity: Connectivity
    ts: int


# What live watchers are told, and the room it happened in (None: no room).
LiveItem = TelemetryPoint | ReportedState | DeviceEvent | ConnectivityChange | Alert | CommandResult


@dataclass(frozen=True, slots=True)
class LiveEvent:
    item: LiveItem
    room_id: str | None


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """The gateway's health, as the LAN API reports it."""

    hotel_id: str
    broker_connected: bool
    devices_online: int
    devices_total: int
    rejected: Mapping[str, int]
    accepted: int
    started_at: int
    cloud_bridge: str = "not enrolled"
    cloud_last_close: str = ""
    cloud_backlog: int = 0
