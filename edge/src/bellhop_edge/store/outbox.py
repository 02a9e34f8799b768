"""The outbox: what the cloud must hear about, in order, durable before it is sent.

Every op that changes something the cloud mirrors appends one row here in the
same transaction as the change (see `apply`), so a change and its outbox row
are committed together or not at all. Rows carry a serialized
`bridge.v1.OutboxEvent`; telemetry rows are stored as columns instead (see
`history`) and encoded when read. Sequence numbers come from SQLite's
AUTOINCREMENT, so one is never reused, even after every row was pruned.

Each row travels on a lane (docs/bridge.md): alert changes and device events
on the priority lane, the rest on the bulk lane; each lane is read in seq
order and acknowledged on its own. Rows the gateway has to drop before they
are sent (too old, or telemetry thinned when the outbox is over its cap)
are replaced by a `Gap` event on their lane saying exactly what was dropped
(docs/edge-store.md, "Outbox").
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2

from bellhop_edge.errors import InvalidAckError
from bellhop_edge.store import history

__all__ = [
    "LANES",
    "Backlog",
    "OutboxEntry",
    "OutboxKind",
    "ack",
    "append",
    "backlog",
    "drop",
    "lane_of",
    "last_acked",
    "last_seq",
    "read_after",
]

BULK: Final = bridge_pb2.LANE_BULK
PRIORITY: Final = bridge_pb2.LANE_PRIORITY
LANES: Final = (PRIORITY, BULK)
_ACKED_COLUMN: Final[dict[int, str]] = {
    BULK: "last_acked_seq",
    PRIORITY: "last_acked_priority_seq",
}


class OutboxKind(IntEnum):
    """What an outbox row carries: the field number of `OutboxEvent.payload`."""

    TELEMETRY = 3
    STATE = 4
    DEVICE_EVENT = 5
    ALERT = 6
    COMMAND_RESULT = 7
    DEVICE = 8
    ROOM = 9
    GAP = 11
    DESIRED = 12


assert OutboxKind.TELEMETRY == history.OUTBOX_TELEMETRY_KIND
# Alarms overtake a backlog; routine device events (door, button, battery) keep
# their place among the rest, so that an alarm is not queued behind them.
_ALARMS: Final = frozenset({common_pb2.EVENT_KIND_BREACH, common_pb2.EVENT_KIND_GAS})


def lane_of(kind: OutboxKind, event: bridge_pb2.OutboxEvent | None = None) -> int:
    """Alert changes and alarm events go on the priority lane, the rest on the bulk lane."""
    if kind == OutboxKind.ALERT:
        return PRIORITY
    if kind == OutboxKind.DEVICE_EVENT and event is not None:
        return PRIORITY if event.device_event.kind in _ALARMS else BULK
    return BULK


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One outbox event, ready for the bridge.

    `data` is a serialized `bridge.v1.OutboxEvent` with `seq` and `lane` set,
    so a batch frame can be built without re-encoding.
    """

    seq: int
    ts: int
    kind: OutboxKind
    data: bytes
    lane: int = BULK

    def event(self) -> bridge_pb2.OutboxEvent:
        return bridge_pb2.OutboxEvent.FromString(self.data)


def append(
    conn: sqlite3.Connection, now: int, kind: OutboxKind, event: bridge_pb2.OutboxEvent
) -> None:
    """Append one event; the caller owns the transaction of the change it mirrors."""
    event.ts.FromMilliseconds(now)
    conn.execute(
        "INSERT INTO outbox (ts, kind, payload, lane) VALUES (?, ?, ?, ?)",
        (now, int(kind), event.SerializeToString(), lane_of(kind, event)),
    )


def last_seq(conn: sqlite3.Connection) -> int:
    """The sequence of the newest event ever appended (0 before the first)."""
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row else 0


def last_acked(conn: sqlite3.Connection) -> dict[int, int]:
    """Each lane's last acknowledged sequence."""
    bulk, priority = conn.execute(
        "SELECT last_acked_seq, last_acked_priority_seq FROM outbox_state"
    ).fetchone()
    return {BULK: int(bulk), PRIORITY: int(priority)}


def rebase(conn: sqlite3.Connection, relay_acked: Mapping[int, int], floor: int = 0) -> int:
    """Move every unacknowledged event past what the relay holds (and past `floor`, the
    gateway's sent mark when it is known); returns how many moved.

    For an edge whose database was restored from an older copy: its sequence
    went back, so the events it appends now reuse numbers the relay has
    already applied, and would be skipped as repeats. Rows keep their order;
    each lane's acknowledgement moves with its rows; new events continue
    after them. Events the copy held and the relay had already applied are
    sent again: history keyed by time ignores them, a device event may show
    twice; losing them would be worse.
    """
    above = max(*relay_acked.values(), floor, 0)
    acked = last_acked(conn)
    low = min(acked.values())
    shift = above - low
    if shift <= 0:
        return 0
    # Through negative numbers: one UPDATE in place could collide with a row not moved yet.
    moved = conn.execute("UPDATE outbox SET seq = -(seq + ?) WHERE seq > ?", (shift, low)).rowcount
    conn.execute("UPDATE outbox SET seq = -seq WHERE seq < 0")
    top = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    conn.execute(
        "UPDATE sqlite_sequence SET seq = max(seq, ?, ?) WHERE name = 'outbox'", (top, above)
    )
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox', ?"
        " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox')",
        (max(top, above),),
    )
    for lane, column in _ACKED_COLUMN.items():
        moved_ack = acked[lane] + shift if acked[lane] > low else acked[lane]
        conn.execute(
            f"UPDATE outbox_state SET {column} = ? WHERE id = 1",  # noqa: S608 - constant
            (max(moved_ack, min(relay_acked.get(lane, 0), above)),),
        )
    return int(moved)


def ack(conn: sqlite3.Connection, seq: int, lane: int = BULK) -> None:
    """The cloud stored everything of `lane` up to `seq`; never goes backwards."""
    column = _ACKED_COLUMN.get(lane)
    if column is None:
        raise InvalidAckError(f"ack on unknown lane {lane}")
    if seq < 0 or seq > last_seq(conn):
        raise InvalidAckError(f"ack of outbox seq {seq} beyond the last appended")
    conn.execute(
        f"UPDATE outbox_state SET {column} = max({column}, ?) WHERE id = 1",  # noqa: S608 - constant
        (seq,),
    )


_COLUMNS = """
SELECT o.seq, o.ts, o.kind, o.payload, s.device_id, s.metric, o.point_ts, o.value, o.lane
FROM outbox o LEFT JOIN series s ON s.series_id = o.series_id
"""
_READ_ALL = _COLUMNS + "WHERE o.seq > ? ORDER BY o.seq LIMIT ?"
# A plain `lane = ?` (no "or any lane"), so the priority lane's partial index is used.
_READ_LANE = _COLUMNS + "WHERE o.seq > ? AND o.lane = ? ORDER BY o.seq LIMIT ?"


def read_after(
    conn: sqlite3.Connection, seq: int, limit: int, lane: int | None = None
) -> list[OutboxEntry]:
    """Events of `lane` (None: every lane) above `seq`, in order, at most `limit`."""
    if lane is None:
        rows = conn.execute(_READ_ALL, (seq, limit)).fetchall()
    else:
        rows = conn.execute(_READ_LANE, (seq, lane, limit)).fetchall()
    return [_entry(*row) for row in rows]


@dataclass(frozen=True, slots=True)
class Backlog:
    """What is still to be sent: events, the time of the oldest (ms), per lane."""

    events: Mapping[int, int]
    oldest_ms: int | None

    @property
    def total(self) -> int:
        return sum(self.events.values())


def backlog(conn: sqlite3.Connection) -> Backlog:
    acked = last_acked(conn)
    events: dict[int, int] = {}
    oldest: int | None = None
    for lane in LANES:
        count, first = conn.execute(
            "SELECT count(*), min(ts) FROM outbox WHERE seq > ? AND lane = ?", (acked[lane], lane)
        ).fetchone()
        events[lane] = int(count)
        if first is not None and (oldest is None or first < oldest):
            oldest = int(first)
    return Backlog(events, oldest)


def drop(
    conn: sqlite3.Connection,
    where: str,
    args: Mapping[str, object],
    limit: int,
    *,
    reason: str,
    now: int,
) -> int:
    """Delete up to `limit` unacknowledged rows matching `where`, oldest first, in one lane
    at a time, and append a `Gap` event on each lane that lost rows; returns rows dropped.

    `where` is a constant SQL condition over `outbox` (its parameters in `args`).
    """
    dropped = 0
    acked = last_acked(conn)
    for lane in LANES:
        params = {**args, "lane": lane, "acked": acked[lane], "limit": limit - dropped}
        picked = (
            f"SELECT seq FROM outbox WHERE lane = :lane AND seq > :acked AND {where}"  # noqa: S608
            " ORDER BY seq LIMIT :limit"
        )
        stats = (
            "SELECT min(seq), max(seq), sum(kind = 3), sum(kind != 3), min(ts), max(ts)"  # noqa: S608 - constants
            f" FROM outbox WHERE seq IN ({picked})"
        )
        first, last, points, others, oldest, newest = conn.execute(stats, params).fetchone()
        if first is None:
            continue
        n = conn.execute(f"DELETE FROM outbox WHERE seq IN ({picked})", params).rowcount  # noqa: S608
        gap = bridge_pb2.Gap(
            first_seq=first,
            last_seq=last,
            telemetry_points=int(points),
            other_events=int(others),
            reason=reason,
        )
        gap.oldest.FromMilliseconds(int(oldest))
        gap.newest.FromMilliseconds(int(newest))
        event = bridge_pb2.OutboxEvent(gap=gap)
        event.ts.FromMilliseconds(now)
        conn.execute(
            "INSERT INTO outbox (ts, kind, payload, lane) VALUES (?, ?, ?, ?)",
            (now, int(OutboxKind.GAP), event.SerializeToString(), lane),
        )
        dropped += n
        if dropped >= limit:
            break
    return dropped


def _entry(  # noqa: PLR0917 - one row of the outbox query
    seq: int,
    ts: int,
    kind: int,
    payload: bytes | None,
    device_id: str | None,
    metric: str | None,
    point_ts: int | None,
    value: float | None,
    lane: int,
) -> OutboxEntry:
    head = bridge_pb2.OutboxEvent(seq=seq, lane=lane)  # type: ignore[arg-type]
    if payload is None:
        # Telemetry rows are stored as columns (see history.py) and encoded here.
        head.ts.FromMilliseconds(ts)
        point = head.telemetry
        point.device_id = device_id or ""
        point.metric = metric or ""
        point.ts.FromMilliseconds(point_ts or 0)
        point.value = value or 0.0
        return OutboxEntry(seq, ts, OutboxKind(kind), head.SerializeToString(), lane)
    # Protobuf merges concatenated messages: the stored event plus its seq and lane.
    return OutboxEntry(seq, ts, OutboxKind(kind), head.SerializeToString() + payload, lane)
