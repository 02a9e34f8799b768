"""The SDK's typed models: one set, whichever path (LAN or cloud) served a call.

Times are timezone-aware UTC `datetime`s truncated to the millisecond, the
resolution both servers keep, so that the same moment compares equal on both
paths. Every model a call returns carries `freshness`: which path served it,
as of when it was true, and since when it is no longer current.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeAlias

__all__ = [
    "AckOutcome",
    "AckResult",
    "Alert",
    "AlertState",
    "Command",
    "CommandStatus",
    "DesiredOutcome",
    "DesiredState",
    "Device",
    "Event",
    "EventPage",
    "FleetCommand",
    "FleetTarget",
    "Freshness",
    "Gap",
    "Hotel",
    "Path",
    "Room",
    "TelemetryPoint",
    "Value",
    "alert_data",
    "alert_key",
    "command_data",
    "command_key",
    "desired_key",
    "device_key",
    "from_ms",
    "plain",
    "state_key",
    "to_ms",
    "utc_ms",
]

# A flat value a device reports or is asked for.
Value: TypeAlias = bool | int | float | str | None


class Path(StrEnum):
    """Which way a call went."""

    LAN = "lan"
    CLOUD = "cloud"


def utc_ms(moment: datetime) -> datetime:
    """`moment` in UTC, truncated to the millisecond (naive times are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch."""
    moment = utc_ms(moment)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


def from_ms(ms: int) -> datetime:
    return utc_ms(datetime.fromtimestamp(ms / 1000, UTC))


def plain(value: Any) -> Any:
    """A JSON value with whole numbers as ints, as the gateway gives them to devices.

    Protobuf's Struct and JSON text both carry one number type; normalising here
    makes a value read on the LAN equal, type and all, to the same value read
    through the cloud.
    """
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


# Natural keys: the same underlying change has the same key on both paths.
def state_key(device_id: str, updated_at: datetime) -> tuple[str, ...]:
    return ("state", device_id, str(to_ms(updated_at)))


def alert_key(alert_id: str, state: str) -> tuple[str, ...]:
    return ("alert", alert_id, state)


def command_key(command_id: str, status: str) -> tuple[str, ...]:
    return ("command", command_id, status)


def desired_key(device_id: str, version: int) -> tuple[str, ...]:
    return ("desired", device_id, str(version))


def device_key(device_id: str, online: bool, last_seen: datetime | None) -> tuple[str, ...]:
    seen = "" if last_seen is None else str(to_ms(last_seen))
    return ("device", device_id, "online" if online else "offline", seen)


@dataclass(frozen=True, slots=True)
class Freshness:
    """How current served data is.

    `as_of`: when the data was last known true (the server's read time for live
    data, the device's or gateway's last contact otherwise). `stale_since`: when
    it stopped being current (device offline since, cloud copy not refreshed
    since); None while it is current.

    On the cloud the relay's `last_seen` and `stale` flag decide: with a
    `last_seen`, as of then and stale since then when the relay says stale or the
    device is offline; without one, as of the read, current when the relay says
    online and not stale, else stale since the hotel's gateway was last heard (when
    a hotel read said it is away) or since the read.
    """

    path: Path
    as_of: datetime
    stale_since: datetime | None = None

    @property
    def stale(self) -> bool:
        return self.stale_since is not None


@dataclass(frozen=True, slots=True)
class Hotel:
    hotel_id: str
    name: str
    freshness: Freshness
    org_id: str | None = None
    timezone: str | None = None
    # When the hotel's gateway was last heard (cloud) or now (LAN: it answered).
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class Room:
    hotel_id: str
    room_id: str
    name: str
    floor: int | None
    freshness: Freshness
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class DesiredOutcome:
    """How one field of the last change made through the cloud merged on the gateway."""

    field: str
    applied: bool
    reason: str
    remote_value: Any = None
    local_value: Any = None


@dataclass(frozen=True, slots=True)
class DesiredState:
    """What staff asked the device to be; `version` grows with every change."""

    hotel_id: str
    device_id: str
    version: int
    values: Mapping[str, Value]
    freshness: Freshness
    updated_at: datetime | None = None
    updated_by: str | None = None
    change_id: str | None = None
    outcomes: tuple[DesiredOutcome, ...] = ()
    # Cloud only: ids of changes sent through the cloud that the gateway has not merged yet.
    pending: tuple[str, ...] = ()
    # Cloud only: "merged" or "queued" for the answer to a change; None otherwise.
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """A device with its reported state.

    `reported_at`/`reported_version` and `desired`/`delta` are what the LAN
    serves with every read; the cloud's device read carries only the reported
    values, so they are None/empty there (read `get_desired` for the desired state).
    """

    hotel_id: str
    device_id: str
    room_id: str | None
    kind: str
    online: bool
    last_seen: datetime | None
    reported: Mapping[str, Value]
    freshness: Freshness
    firmware: str | None = None
    registered: bool = True
    reported_at: datetime | None = None
    reported_version: int | None = None
    desired: DesiredState | None = None
    delta: Mapping[str, Value] = field(default_factory=dict)


class CommandStatus(StrEnum):
    QUEUED = "queued"  # cloud: waiting for the gateway to connect
    PENDING = "pending"  # sent, waiting for the device (the cloud's "sent")
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the device acknowledged and reported an error
    TIMED_OUT = "timed_out"  # no acknowledgement in time; the device may still act
    EXPIRED = "expired"  # never sent: its time to live ran out first

    @property
    def finished(self) -> bool:
        return self not in (CommandStatus.QUEUED, CommandStatus.PENDING)


@dataclass(frozen=True, slots=True)
class Command:
    hotel_id: str
    command_id: str
    device_id: str
    name: str
    status: CommandStatus
    freshness: Freshness
    params: Mapping[str, Value] = field(default_factory=dict)
    result: Mapping[str, Any] | None = None
    error: str | None = None
    completed_at: datetime | None = None
    requested_at: datetime | None = None
    expires_at: datetime | None = None
    requested_by: str | None = None


@dataclass(frozen=True, slots=True)
class FleetTarget:
    """Which devices a fleet command reaches; `all_devices` for every registered device.

    Both paths apply one rule: a union within each list, an intersection across
    lists (`kinds=("thermostat",), floors=(3,)` is the thermostats on floor 3).
    `all_devices` counts only when no list is given.
    """

    room_ids: tuple[str, ...] = ()
    floors: tuple[int, ...] = ()
    kinds: tuple[str, ...] = ()
    device_ids: tuple[str, ...] = ()
    all_devices: bool = False


@dataclass(frozen=True, slots=True)
class FleetCommand:
    hotel_id: str
    fleet_id: str
    targeted: int
    commands: tuple[Command, ...]
    freshness: Freshness

    @property
    def counts(self) -> dict[CommandStatus, int]:
        counts: dict[CommandStatus, int] = {}
        for c in self.commands:
            counts[c.status] = counts.get(c.status, 0) + 1
        return counts

    @property
    def finished(self) -> bool:
        return all(c.status.finished for c in self.commands)


class AlertState(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


@dataclass(frozen=True, slots=True)
class Alert:
    hotel_id: str
    alert_id: str
    kind: str  # e.g. "breach", "gas", "temperature_out_of_range"
    severity: str  # "info", "warning" or "critical"
    state: AlertState
    device_id: str | None
    room_id: str | None
    message: str
    raised_at: datetime
    freshness: Freshness
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    note: str | None = None
    cleared_at: datetime | None = None


class AckResult(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    QUEUED = "queued"  # cloud: the gateway is away; acknowledged when it connects
    ALREADY_ACKNOWLEDGED = "already_acknowledged"
    ALREADY_CLEARED = "already_cleared"


@dataclass(frozen=True, slots=True)
class AckOutcome:
    hotel_id: str
    alert_id: str
    outcome: AckResult
    freshness: Freshness
    # The alert as it stands after the call (LAN: always; cloud: None, its answer has no alert).
    alert: Alert | None = None


@dataclass(frozen=True, slots=True)
class TelemetryPoint:
    device_id: str
    metric: str
    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Event:
    """One change in a hotel, as a live stream carries it.

    `kind`: "state", "alert", "command", "desired", "device" (both paths) or
    "gateway" (cloud only). `key` is the natural key of the underlying change,
    equal on both paths for the same change, for de-duplication across a switch.
    `event_id` is the cloud's resumable id (None on the LAN).
    """

    kind: str
    key: tuple[str, ...]
    hotel_id: str
    room_id: str | None
    at: datetime
    data: Mapping[str, Any]
    path: Path
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Gap:
    """Events may have been missed here: read the current state again."""

    reason: str
    at: datetime
    path: Path
    # The last event id received before the gap (cloud), if any.
    last_event_id: str | None = None


@dataclass(frozen=True, slots=True)
class EventPage:
    """One page of recent events (cloud JSON mode): pass `last_event_id` back as `after`."""

    events: tuple[Event, ...]
    gap: bool
    last_event_id: str | None
    path: Path = Path.CLOUD


def alert_data(a: Alert) -> dict[str, Any]:
    """An alert as an event's data: the same keys and values on both paths."""
    return {
        "alert_id": a.alert_id,
        "kind": a.kind,
        "severity": a.severity,
        "state": a.state.value,
        "device_id": a.device_id,
        "room_id": a.room_id,
        "message": a.message,
        "raised_at": a.raised_at,
        "acknowledged_at": a.acknowledged_at,
        "acknowledged_by": a.acknowledged_by,
        "note": a.note,
        "cleared_at": a.cleared_at,
    }


def command_data(c: Command) -> dict[str, Any]:
    """A command result as an event's data: the same keys and values on both paths."""
    return {
        "command_id": c.command_id,
        "device_id": c.device_id,
        "status": c.status.value,
        "result": None if c.result is None else dict(c.result),
        "error": c.error,
        "completed_at": c.completed_at,
    }
