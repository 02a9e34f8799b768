"""The bridge protocol between an edge gateway and the cloud relay, without I/O.

    frames       one protobuf Frame per WebSocket message: limits, batches, the proof
    connection   what both ends share: handshake deadline, heartbeats, closing
    edge         `EdgeConnection`: prove the gateway's identity, stream the outbox in lanes
    relay        `RelayConnection`: check the gateway, take its events; `Dedup`
    events       what a connection tells its driver
    backoff      reconnect delays: capped exponential with full jitter
    commands     command ids both ends agree on (a fleet's per-device ids)
    desired      the desired-state conflict policy, a pure merge (docs/conflicts.md)
    errors       `CloseCode` and the error tree

The edge's bridge client and the relay's bridge endpoint are thin asyncio
drivers over these; the protocol is described in docs/bridge.md.
"""

from bellhop_bridge.backoff import after_restart, full_jitter
from bellhop_bridge.commands import fleet_command_id
from bellhop_bridge.connection import Connection, State
from bellhop_bridge.edge import LANES, EdgeConnection
from bellhop_bridge.errors import FATAL, BridgeError, CloseCode, ProtocolError
from bellhop_bridge.events import (
    Acked,
    AlertAcknowledged,
    BatchReceived,
    Closed,
    CommandReceived,
    CommandResultReceived,
    DesiredChangeReceived,
    Event,
    HeartbeatReceived,
    HelloReceived,
    Opened,
    ProofReceived,
    SnapshotReceived,
    SnapshotRequested,
)
from bellhop_bridge.frames import MAX_BATCH_EVENTS, MAX_FRAME_BYTES, PROTOCOL_VERSION
from bellhop_bridge.relay import Dedup, RelayConnection

__all__ = [
    "FATAL",
    "LANES",
    "MAX_BATCH_EVENTS",
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "Acked",
    "AlertAcknowledged",
    "BatchReceived",
    "BridgeError",
    "CloseCode",
    "Closed",
    "CommandReceived",
    "CommandResultReceived",
    "Connection",
    "Dedup",
    "DesiredChangeReceived",
    "EdgeConnection",
    "Event",
    "HeartbeatReceived",
    "HelloReceived",
    "Opened",
    "ProofReceived",
    "ProtocolError",
    "RelayConnection",
    "SnapshotReceived",
    "SnapshotRequested",
    "State",
    "after_restart",
    "fleet_command_id",
    "full_jitter",
]
