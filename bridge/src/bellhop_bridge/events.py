"""What a bridge connection tells its driver, one record per thing that happened."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeAlias

from bellhop.bridge.v1 import bridge_pb2

from bellhop_bridge.errors import CloseCode

__all__ = [
    "Acked",
    "AlertAcknowledged",
    "BatchReceived",
    "Closed",
    "CommandReceived",
    "CommandResultReceived",
    "DesiredChangeReceived",
    "Event",
    "HeartbeatReceived",
    "HelloReceived",
    "Lane",
    "Opened",
    "ProofReceived",
    "SnapshotReceived",
    "SnapshotRequested",
]

# bridge_pb2.LANE_BULK or bridge_pb2.LANE_PRIORITY (plain ints, as on the wire).
Lane: TypeAlias = int


# -- both ends ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is over: close the socket. `fatal`: do not reconnect."""

    code: CloseCode
    message: str
    fatal: bool
    by_peer: bool


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    backlog_events: int = 0
    oldest_unsent_ms: int | None = None
    thinned_points: int = 0


# -- the edge hears ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Opened:
    """Accepted: send each lane's events after its last acknowledged sequence."""

    last_acked: Mapping[Lane, int]
    heartbeat_interval_s: float
    window_events: int
    window_bytes: int
    # The relay's token keys for the LAN API, unchecked (the gateway validates them);
    # None from a relay that sends none.
    token_trust: bridge_pb2.TokenTrust | None = None


@dataclass(frozen=True, slots=True)
class Acked:
    """The relay stored everything of `lane` up to and including `seq`."""

    lane: Lane
    seq: int


@dataclass(frozen=True, slots=True)
class CommandReceived:
    command: bridge_pb2.RemoteCommand


@dataclass(frozen=True, slots=True)
class AlertAcknowledged:
    acknowledgement: bridge_pb2.AlertAcknowledgement


@dataclass(frozen=True, slots=True)
class DesiredChangeReceived:
    change: bridge_pb2.DesiredStateChange


@dataclass(frozen=True, slots=True)
class SnapshotRequested:
    request_id: str


# -- the relay hears --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HelloReceived:
    """Look the gateway up, then `challenge(nonce)` or `refuse(code, ...)`."""

    gateway_id: str
    hotel_id: str
    protocol_version: int
    software_version: str


@dataclass(frozen=True, slots=True)
class ProofReceived:
    """Check `signature` over `message` with the gateway's key, then `welcome` or `refuse`."""

    message: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class BatchReceived:
    """Apply the events not yet applied (see `Dedup`), then `ack` each lane."""

    events: Sequence[bridge_pb2.OutboxEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CommandResultReceived:
    result: bridge_pb2.RemoteCommandResult


@dataclass(frozen=True, slots=True)
class SnapshotReceived:
    snapshot: bridge_pb2.Snapshot


Event = (
    Closed
    | HeartbeatReceived
    | Opened
    | Acked
    | CommandReceived
    | AlertAcknowledged
    | DesiredChangeReceived
    | SnapshotRequested
    | HelloReceived
    | ProofReceived
    | BatchReceived
    | CommandResultReceived
    | SnapshotReceived
)
