"""The outbox: what the cloud must hear about, in order, durable before it is sent.

Every op that changes something the cloud mirrors appends one row here in the
same transaction as the change (see `apply`), so a change and its outbox row
are committed together or not at all. Rows carry a serialized
`bridge.v1.OutboxEvent`; telemetry rows are stored as columns instead (see
`history`) and encoded when read. The bridge reads with `read_after` and
acknowledges with `ack`; retention deletes acknowledged rows. Sequence
numbers come from SQLite's AUTOINCREMENT, so one is never reused, even after
every row was pruned (docs/edge-store.md, "Outbox").
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from enum import IntEnum

from bellhop.bridge.v1 import bridge_pb2

from bellhop_edge.errors import InvalidAckError
from bellhop_edge.store import history

__all__ = ["OutboxEntry", "OutboxKind", "ack", "append", "last_acked", "last_seq", "read_after"]


class OutboxKind(IntEnum):
    """What an outbox row carries: the field number of `OutboxEvent.payload`."""

    TELEMETRY = 3
    STATE = 4
    DEVICE_EVENT = 5
    ALERT = 6
    COMMAND_RESULT = 7
    DEVICE = 8
    ROOM = 9


assert OutboxKind.TELEMETRY == history.OUTBOX_TELEMETRY_KIND


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox event, ready for the bridge.

    `data` is a serialized `bridge.v1.OutboxEvent` with `seq` set, so a batch
    frame can be built without re-encoding.
    """

    seq: int
    ts: int
    kind: OutboxKind
    data: bytes

    def event(self) -> bridge_pb2.OutboxEvent:
        return bridge_pb2.OutboxEvent.FromString(self.data)


def append(
    conn: sqlite3.Connection, now: int, kind: OutboxKind, event: bridge_pb2.OutboxEvent
) -> None:
    """Append one event; the caller owns the transaction of the change it mirrors."""
    event.ts.FromMilliseconds(now)
    conn.execute(
        "INSERT INTO outbox (ts, kind, payload) VALUES (?, ?, ?)",
        (now, int(kind), event.SerializeToString()),
    )


def last_seq(conn: sqlite3.Connection) -> int:
    """The sequence of the newest event ever appended (0 before the first)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row else 0


def last_acked(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT last_acked_seq FROM outbox_state").fetchone()[0])


def ack(conn: sqlite3.Connection, seq: int) -> None:
    """The cloud stored everything up to `seq`; acknowledgements never go backwards."""
    if seq < 0 or seq > last_seq(conn):
        raise InvalidAckError(f"ack of outbox seq {seq} beyond the last appended")
    conn.execute(
        "UPDATE outbox_state SET last_acked_seq = max(last_acked_seq, ?) WHERE id = 1", (seq,)
    )


def read_after(conn: sqlite3.Connection, seq: int, limit: int) -> list[OutboxEntry]:
    """Events with a sequence above `seq`, in order, at most `limit`."""
    rows = conn.execute(
        "SELECT o.seq, o.ts, o.kind, o.payload, s.device_id, s.metric, o.point_ts, o.value"
        " FROM outbox o LEFT JOIN series s ON s.series_id = o.series_id"
        " WHERE o.seq > ? ORDER BY o.seq LIMIT ?",
        (seq, limit),
    ).fetchall()
    return [_entry(*row) for row in rows]


def _entry(  # noqa: PLR0917 - one row of the outbox query
    seq: int,
    ts: int,
    kind: int,
    payload: bytes | None,
    device_id: str | None,
    metric: str | None,
    point_ts: int | None,
    value: float | None,
) -> OutboxEntry:
    head = bridge_pb2.OutboxEvent(seq=seq)
    if payload is None:
        # Telemetry rows are stored as columns (see history.py) and encoded here.
        head.ts.FromMilliseconds(ts)
        point = head.telemetry
        point.device_id = device_id or ""
        point.metric = metric or ""
        point.ts.FromMilliseconds(point_ts or 0)
        point.value = value or 0.0
        return OutboxEntry(seq, ts, OutboxKind(kind), head.SerializeToString())
    # Protobuf merges concatenated messages: the stored event plus its seq.
    return OutboxEntry(seq, ts, OutboxKind(kind), head.SerializeToString() + payload)
