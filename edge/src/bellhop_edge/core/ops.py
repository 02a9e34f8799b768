"""Write ops: what the cores ask the store to record.

Every change to the gateway's database is one of these frozen records. The
cores produce them; `bellhop_edge.store` applies them, in one transaction
with the outbox row that tells the cloud (see `store.apply`). Keeping them
here, beside the cores and free of SQL, lets a core say what must be stored
without importing the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bellhop_edge.core.commands import CommandRecord
from bellhop_edge.core.model import (
    Alert,
    DesiredState,
    Device,
    DeviceEvent,
    ReportedState,
    Room,
    TelemetryPoint,
)

__all__ = [
    "AckOutbox",
    "PutAlert",
    "PutCommand",
    "PutDesired",
    "PutDevice",
    "PutDeviceStatus",
    "PutEvent",
    "PutLastSeen",
    "PutMessage",
    "PutReported",
    "PutRoom",
    "PutTelemetry",
    "RemoveDevice",
    "WriteOp",
]


@dataclass(frozen=True, slots=True)
class PutTelemetry:
    """Raw points (usually one device message); one outbox event per point."""

    points: Sequence[TelemetryPoint]


@dataclass(frozen=True, slots=True)
class PutReported:
    state: ReportedState


@dataclass(frozen=True, slots=True)
class PutDesired:
    """What staff asked a device to be; mirrored to the cloud through the outbox."""

    state: DesiredState


@dataclass(frozen=True, slots=True)
class PutEvent:
    event: DeviceEvent


@dataclass(frozen=True, slots=True)
class PutDevice:
    """Registry entry, unknown device or connectivity change: the whole record."""

    device: Device


@dataclass(frozen=True, slots=True)
class PutDeviceStatus:
    """Live facts the gateway observed (connectivity, last_seen, firmware).

    Unlike `PutDevice` it never creates a registered row nor changes the
    registry: a device removed by a tool while this op waited stays removed.
    A device never seen before is recorded as unknown.
    """

    device: Device


@dataclass(frozen=True, slots=True)
class RemoveDevice:
    device_id: str


@dataclass(frozen=True, slots=True)
class PutRoom:
    room: Room


@dataclass(frozen=True, slots=True)
class PutLastSeen:
    """Liveness bookkeeping, coalesced by the caller; not an outbox event."""

    seen: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class PutAlert:
    alert: Alert


@dataclass(frozen=True, slots=True)
class PutCommand:
    """A command and its latest result; a final result is never overwritten."""

    record: CommandRecord


@dataclass(frozen=True, slots=True)
class AckOutbox:
    """The cloud stored everything of `lane` up to and including `seq`.

    Lanes as in bridge.v1.Lane: 1 bulk, 2 priority (docs/bridge.md).
    """

    seq: int
    lane: int = 1


@dataclass(frozen=True, slots=True)
class PutMessage:
    """The writes of one QoS 1 device message and its receipt: all or nothing.

    The receipt (`replay.replay_key`) is committed in the same transaction as
    the writes, so after a crash the gateway knows exactly which of the
    messages the broker sends again were already stored.
    """

    receipt: int
    ops: tuple[WriteOp, ...]


WriteOp = (
    PutTelemetry
    | PutReported
    | PutDesired
    | PutEvent
    | PutDevice
    | PutDeviceStatus
    | RemoveDevice
    | PutRoom
    | PutLastSeen
    | PutAlert
    | PutCommand
    | AckOutbox
    | PutMessage
)
