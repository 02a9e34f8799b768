"""The gateway's SQLite store: schema, reads, and the single batching writer.

    store = EdgeStore.open(path)            # migrates; reads + rare writes
    async with StoreWriter(path) as writer:  # the hot path, one thread
        first = writer.last_ticket + 1
        writer.submit(PutTelemetry(points))
        writer.on_outcome(first, ack_or_redeliver)  # called with ok: bool
        await writer.flush()

Every write is a `WriteOp` (a frozen dataclass). `EdgeStore.apply` runs ops
synchronously in one transaction (start-up, registry, tools); `StoreWriter`
runs them on its own thread and connection, many ops per transaction. Both go
through `_Applier`, so an op means the same thing on either path, and every op
that the cloud must hear about appends its outbox row in the same transaction
as the record it mirrors.

Durability, batching, back-pressure, retention and the outbox encoding are
described in docs/edge-store.md.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import json
import logging
import math
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from sqlite_utils import Database

from bellhop_edge import convert, history
from bellhop_edge.commands import CommandRecord, CommandRequest, now_ms
from bellhop_edge.errors import EdgeError, InvalidRequest, Unavailable
from bellhop_edge.model import (
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
    DeviceKind,
    ReportedState,
    Room,
    TelemetryPoint,
)

__all__ = [
    "SCHEMA_VERSION",
    "AckOutbox",
    "EdgeStore",
    "InvalidAckError",
    "OutboxEntry",
    "OutboxKind",
    "PutAlert",
    "PutCommand",
    "PutDesired",
    "PutDevice",
    "PutEvent",
    "PutLastSeen",
    "PutReported",
    "PutRoom",
    "PutTelemetry",
    "RemoveDevice",
    "RetentionPolicy",
    "RetentionReport",
    "SchemaVersionError",
    "StoreCounts",
    "StoreError",
    "StoreWriter",
    "Synchronous",
    "WriteFailedError",
    "WriteOp",
    "WriterClosedError",
    "WriterFullError",
    "WriterStats",
]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS: Final = 5000
# Commands whose final status must never be overwritten by a later write.
_FINAL_COMMAND = ("succeeded", "failed", "expired")


# -- errors -------------------------------------------------------------------------
class StoreError(EdgeError):
    """Root of the store's errors (under `EdgeError`)."""


class SchemaVersionError(StoreError):
    """The database was written by a newer gateway; refusing to touch it."""


class WriterClosedError(StoreError, Unavailable):
    """The writer is closed (or died); nothing more can be submitted."""


class WriterFullError(StoreError, Unavailable):
    """`submit` found `max_pending` ops not yet committed; use `put` to wait instead."""


class WriteFailedError(StoreError):
    """An op could not be committed; the rest of its batch was."""


class InvalidAckError(StoreError, InvalidRequest):
    """An outbox ack beyond the last sequence ever appended."""


class Synchronous(StrEnum):
    """SQLite `synchronous` in WAL mode; see docs/edge-store.md for the trade-off."""

    NORMAL = "NORMAL"
    FULL = "FULL"


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


# -- write ops ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PutTelemetry:
    """Raw points (usually one device message); one outbox event per point."""

    points: Sequence[TelemetryPoint]


@dataclass(frozen=True, slots=True)
class PutReported:
    state: ReportedState


@dataclass(frozen=True, slots=True)
class PutDesired:
    """Stored only: the bridge protocol has no desired-state event."""

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
    """The cloud stored everything up to and including `seq`."""

    seq: int


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
)


# -- read records -------------------------------------------------------------------
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


@dataclass(frozen=True, slots=True)
class StoreCounts:
    """Cheap figures for health; no full-table scans of the history tables."""

    rooms: int
    devices: int
    unknown_devices: int
    open_alerts: int
    commands: int
    series: int
    # Raw points waiting for compaction (bounded by the writer's compact_rows).
    staged_points: int
    outbox_last_seq: int
    outbox_last_acked: int
    size_bytes: int

    @property
    def outbox_pending(self) -> int:
        return self.outbox_last_seq - self.outbox_last_acked


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of record is kept (seconds); see docs/edge-store.md."""

    raw_retention_s: float = 7 * 86400
    rollup_bucket_s: float = 300
    rollup_retention_s: float = 400 * 86400
    events_retention_s: float = 90 * 86400
    # Unacked outbox events older than this are dropped so that a gateway that
    # is never connected cannot fill its disk; the bridge sees the gap and
    # resyncs with a snapshot. None keeps them forever.
    outbox_max_age_s: float | None = 30 * 86400
    # Work per transaction, so the writer is never held for long.
    series_per_chunk: int = 200
    rows_per_chunk: int = 20_000

    def __post_init__(self) -> None:
        if min(self.raw_retention_s, self.rollup_bucket_s, self.rollup_retention_s) <= 0:
            raise ValueError("retention periods and the rollup bucket must be positive")
        if self.events_retention_s <= 0 or self.series_per_chunk <= 0 or self.rows_per_chunk <= 0:
            raise ValueError("events retention and chunk sizes must be positive")


@dataclass(frozen=True, slots=True)
class RetentionReport:
    raw_rows_compacted: int = 0
    raw_rows_rolled_up: int = 0
    rollup_rows_deleted: int = 0
    events_deleted: int = 0
    alerts_deleted: int = 0
    commands_deleted: int = 0
    outbox_acked_deleted: int = 0
    outbox_unacked_dropped: int = 0
    transactions: int = 0
    # Steps that failed (a full disk fails those that need new pages) and were skipped.
    failed_steps: int = 0

    def __add__(self, other: RetentionReport) -> RetentionReport:
        return RetentionReport(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


# -- schema -------------------------------------------------------------------------
def _schema_v1(db: Database) -> None:
    db.table("rooms").create(
        {"room_id": str, "name": str, "floor": int},
        pk="room_id",
        not_null={"name", "floor"},
        strict=True,
    )
    db.table("devices").create(
        {
            "device_id": str,
            "room_id": str,
            "kind": str,
            "registered": int,
            "connectivity": str,
            "first_seen": int,
            "last_seen": int,
            "firmware": str,
        },
        pk="device_id",
        not_null={"registered", "connectivity"},
        strict=True,
    )
    db.table("devices").create_index(["room_id"])
    for name, extra in (("reported_state", {}), ("desired_state", {"updated_by": str})):
        db.table(name).create(
            {"device_id": str, "version": int, "values_json": str, "updated_at": int, **extra},
            pk="device_id",
            not_null={"version", "values_json", "updated_at", *extra},
            strict=True,
        )
    db.table("events").create(
        {"event_id": int, "device_id": str, "kind": str, "ts": int, "data": str},
        pk="event_id",
        not_null={"device_id", "kind", "ts", "data"},
        strict=True,
    )
    db.table("events").create_index(["device_id", "ts"])
    db.table("events").create_index(["ts"])
    db.table("alerts").create(
        {
            "alert_id": str,
            "kind": str,
            "severity": str,
            "state": str,
            "device_id": str,
            "room_id": str,
            "message": str,
            "raised_at": int,
            "acknowledged_at": int,
            "acknowledged_by": str,
            "note": str,
            "cleared_at": int,
        },
        pk="alert_id",
        not_null={"kind", "severity", "state", "device_id", "message", "raised_at"},
        strict=True,
    )
    db.table("alerts").create_index(["state"])
    db.table("alerts").create_index(["raised_at"])
    db.table("commands").create(
        {
            "command_id": str,
            "device_id": str,
            "name": str,
            "params": str,
            "expires_at": int,
            "requested_by": str,
            "status": str,
            "result": str,
            "error": str,
            "created_at": int,
            "completed_at": int,
        },
        pk="command_id",
        not_null={
            "device_id",
            "name",
            "params",
            "expires_at",
            "requested_by",
            "status",
            "created_at",
        },
        strict=True,
    )
    db.table("commands").create_index(["created_at"])
    # sqlite-utils cannot express AUTOINCREMENT or WITHOUT ROWID.
    # AUTOINCREMENT: a sequence is never reused, even after every row was pruned.
    db.execute(
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            series_id INTEGER,
            point_ts INTEGER,
            value REAL,
            payload BLOB
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE outbox_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_acked_seq INTEGER NOT NULL
        ) STRICT
        """
    )
    db.execute("INSERT INTO outbox_state (id, last_acked_seq) VALUES (1, 0)")
    for ddl in history.HISTORY_DDL:
        db.execute(ddl)


def _schema_v2(db: Database) -> None:
    """Stage new telemetry in an append-only table (see history.py)."""
    db.execute(history.RECENT_DDL)
    # Points that v1 wrote straight into `telemetry` stay there: nothing to move.


def _schema_v3(db: Database) -> None:
    """A registry version that tools bump so a running gateway reloads rooms and devices."""
    db.execute(
        "CREATE TABLE registry_state (id INTEGER PRIMARY KEY CHECK (id = 0),"
        " version INTEGER NOT NULL) STRICT"
    )
    db.execute("INSERT INTO registry_state (id, version) VALUES (0, 0)")


# Forward migrations: entry i upgrades a database at user_version i to i + 1.
_MIGRATIONS: Final[tuple[Callable[[Database], None], ...]] = (
    _schema_v1,
    _schema_v2,
    _schema_v3,
)
SCHEMA_VERSION: Final = len(_MIGRATIONS)


def _connect(path: Path, synchronous: Synchronous, *, cache_kib: int) -> sqlite3.Connection:
    # isolation_level=None: this module issues BEGIN/COMMIT itself.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"{path}: cannot use WAL journal mode (got {mode!r})")
    # Synchronous(...) also admits the plain "NORMAL"/"FULL" of a config file.
    conn.execute(f"PRAGMA synchronous = {Synchronous(synchronous).value}")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # A WAL that grew during a burst is truncated back after checkpoints.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    return conn


def _limit_size(conn: sqlite3.Connection, max_bytes: int) -> None:
    """Writes past `max_bytes` fail with SQLITE_FULL, as on a full disk.

    A database already larger keeps its size: it cannot grow, and pages that
    retention frees are reused.
    """
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = max(1, max_bytes // page_size)
    conn.execute(f"PRAGMA max_page_count = {pages}")


def _migrate(conn: sqlite3.Connection) -> None:
    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"database schema version {version} is newer than this gateway's "
                f"{SCHEMA_VERSION}; upgrade the gateway"
            )
        for step in _MIGRATIONS[version:]:
            step(db)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # Some errors (disk full, I/O) have already rolled the transaction back.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _last_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return int(row[0]) if row else 0


def _json(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    return json.dumps(dict(values), separators=(",", ":"), allow_nan=False)


def _ms(seconds: float) -> int:
    """Whole milliseconds: bucket arithmetic in SQL must stay integer."""
    return round(seconds * 1000)


# -- applying ops -------------------------------------------------------------------
class _Applier:
    """Turns ops into SQL on one connection; the caller owns the transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.series = history.SeriesIndex(conn)
        self.rejected_points = 0
        self.staged_points = 0  # appended to telemetry_recent by this applier

    def apply_batch(self, ops: Sequence[WriteOp], now: int) -> None:
        """Apply ops in order; consecutive telemetry ops become one bulk insert."""
        rows: list[tuple[int, int, float]] = []
        series_id = self.series.id_for
        for op in ops:
            if isinstance(op, PutTelemetry):
                for p in op.points:
                    value = float(p.value)
                    # JSON (and so the bulk insert) has no NaN or infinity.
                    if math.isfinite(value):
                        rows.append((series_id(p.device_id, p.metric), int(p.ts), value))
                    else:
                        self.rejected_points += 1
                continue
            if rows:
                self._insert(rows, now)
                rows = []
            self.apply_one(op, now)
        self._insert(rows, now)

    def _insert(self, rows: list[tuple[int, int, float]], now: int) -> None:
        history.insert_points(self._conn, rows, outbox_ts=now)
        self.staged_points += len(rows)

    def apply_one(self, op: WriteOp, now: int) -> None:
        conn = self._conn
        if isinstance(op, PutTelemetry):
            self.apply_batch((op,), now)
        elif isinstance(op, PutReported):
            s = op.state
            conn.execute(
                "INSERT INTO reported_state (device_id, version, values_json, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " version = excluded.version, values_json = excluded.values_json,"
                " updated_at = excluded.updated_at",
                (s.device_id, s.version, _json(s.values), s.updated_at),
            )
            self._outbox(now, OutboxKind.STATE, bridge_pb2.OutboxEvent(state=convert.reported(s)))
        elif isinstance(op, PutDesired):
            d = op.state
            conn.execute(
                "INSERT INTO desired_state"
                " (device_id, version, values_json, updated_at, updated_by)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " version = excluded.version, values_json = excluded.values_json,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                (d.device_id, d.version, _json(d.values), d.updated_at, d.updated_by),
            )
        elif isinstance(op, PutEvent):
            e = op.event
            conn.execute(
                "INSERT INTO events (device_id, kind, ts, data) VALUES (?, ?, ?, ?)",
                (e.device_id, e.kind.value, e.ts, _json(e.data)),
            )
            self._outbox(
                now, OutboxKind.DEVICE_EVENT, bridge_pb2.OutboxEvent(device_event=convert.event(e))
            )
        elif isinstance(op, PutDevice):
            self._put_device(op.device, now)
        elif isinstance(op, PutDeviceStatus):
            self._put_device_status(op.device, now)
        elif isinstance(op, RemoveDevice):
            self._remove_device(op.device_id, now)
        elif isinstance(op, PutRoom):
            r = op.room
            conn.execute(
                "INSERT INTO rooms (room_id, name, floor) VALUES (?, ?, ?)"
                " ON CONFLICT (room_id) DO UPDATE SET name = excluded.name, floor = excluded.floor",
                (r.room_id, r.name, r.floor),
            )
            self._outbox(now, OutboxKind.ROOM, bridge_pb2.OutboxEvent(room=convert.room(r)))
        elif isinstance(op, PutLastSeen):
            # One statement for the whole map: one GIL handoff, not one per device.
            conn.execute(
                "UPDATE devices SET last_seen = max(coalesce(last_seen, 0), seen.value),"
                " first_seen = coalesce(first_seen, seen.value)"
                " FROM json_each(?) AS seen WHERE devices.device_id = seen.key",
                (json.dumps({k: int(v) for k, v in op.seen.items()}),),
            )
        elif isinstance(op, PutAlert):
            self._put_alert(op.alert, now)
        elif isinstance(op, PutCommand):
            self._put_command(op.record, now)
        else:
            self._ack(op.seq)

    def _outbox(self, now: int, kind: OutboxKind, event: bridge_pb2.OutboxEvent) -> None:
        event.ts.FromMilliseconds(now)
        self._conn.execute(
            "INSERT INTO outbox (ts, kind, payload) VALUES (?, ?, ?)",
            (now, int(kind), event.SerializeToString()),
        )

    def _put_device(self, d: Device, now: int) -> None:
        self._conn.execute(
            "INSERT INTO devices (device_id, room_id, kind, registered, connectivity,"
            " first_seen, last_seen, firmware) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)"
            " ON CONFLICT (device_id) DO UPDATE SET room_id = excluded.room_id,"
            " kind = excluded.kind, registered = excluded.registered,"
            " connectivity = excluded.connectivity,"
            " first_seen = coalesce(devices.first_seen, excluded.first_seen),"
            " last_seen = coalesce(max(devices.last_seen, excluded.last_seen),"
            " devices.last_seen, excluded.last_seen),"
            " firmware = excluded.firmware",
            (
                d.device_id,
                d.room_id,
                d.kind.value if d.kind else None,
                int(d.registered),
                d.connectivity.value,
                d.last_seen,
                d.firmware,
            ),
        )
        self._outbox(now, OutboxKind.DEVICE, bridge_pb2.OutboxEvent(device=convert.device(d)))

    def _put_device_status(self, d: Device, now: int) -> None:
        cursor = self._conn.execute(
            "UPDATE devices SET connectivity = ?2,"
            " last_seen = coalesce(max(last_seen, ?3), last_seen, ?3),"
            " firmware = coalesce(?4, firmware)"
            " WHERE device_id = ?1 AND registered = ?5",
            (d.device_id, d.connectivity.value, d.last_seen, d.firmware, int(d.registered)),
        )
        if cursor.rowcount == 0:
            if d.registered:
                return  # removed (or never registered) meanwhile: nothing to record
            cursor = self._conn.execute(
                "INSERT INTO devices (device_id, room_id, kind, registered, connectivity,"
                " first_seen, last_seen, firmware) VALUES (?1, NULL, ?2, 0, ?3, ?4, ?4, ?5)"
                " ON CONFLICT (device_id) DO NOTHING",
                (
                    d.device_id,
                    d.kind.value if d.kind else None,
                    d.connectivity.value,
                    d.last_seen,
                    d.firmware,
                ),
            )
            if cursor.rowcount == 0:
                return
        self._outbox(now, OutboxKind.DEVICE, bridge_pb2.OutboxEvent(device=convert.device(d)))

    def _remove_device(self, device_id: str, now: int) -> None:
        conn = self._conn
        if conn.execute("DELETE FROM devices WHERE device_id = ?", (device_id,)).rowcount == 0:
            return
        conn.execute("DELETE FROM reported_state WHERE device_id = ?", (device_id,))
        conn.execute("DELETE FROM desired_state WHERE device_id = ?", (device_id,))
        # The bridge has no removal event: the cloud learns it as "no longer registered".
        gone = common_pb2.Device(device_id=device_id, registered=False)
        self._outbox(now, OutboxKind.DEVICE, bridge_pb2.OutboxEvent(device=gone))

    def _put_alert(self, a: Alert, now: int) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO alerts (alert_id, kind, severity, state, device_id, room_id,"
            " message, raised_at, acknowledged_at, acknowledged_by, note, cleared_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.alert_id,
                a.kind.value,
                a.severity.value,
                a.state.value,
                a.device_id,
                a.room_id,
                a.message,
                a.raised_at,
                a.acknowledged_at,
                a.acknowledged_by,
                a.note,
                a.cleared_at,
            ),
        )
        self._outbox(now, OutboxKind.ALERT, bridge_pb2.OutboxEvent(alert=convert.alert(a)))

    def _put_command(self, record: CommandRecord, now: int) -> None:
        req, res = record.request, record.result
        changed = self._conn.execute(
            "INSERT INTO commands (command_id, device_id, name, params, expires_at, requested_by,"
            " status, result, error, created_at, completed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (command_id) DO UPDATE SET status = excluded.status,"
            " result = excluded.result, error = excluded.error,"
            " completed_at = excluded.completed_at"
            " WHERE commands.status NOT IN (?, ?, ?)",
            (
                req.command_id,
                req.device_id,
                req.name,
                _json(req.params),
                req.expires_at,
                req.requested_by,
                res.status.value,
                _json(res.result),
                res.error,
                record.created_at,
                res.completed_at,
                *_FINAL_COMMAND,
            ),
        ).rowcount
        if changed and res.status is not CommandStatus.PENDING:
            self._outbox(
                now,
                OutboxKind.COMMAND_RESULT,
                bridge_pb2.OutboxEvent(command_result=convert.command_result(res)),
            )

    def _ack(self, seq: int) -> None:
        if seq < 0 or seq > _last_seq(self._conn):
            raise InvalidAckError(f"ack of outbox seq {seq} beyond the last appended")
        self._conn.execute(
            "UPDATE outbox_state SET last_acked_seq = max(last_acked_seq, ?) WHERE id = 1", (seq,)
        )


# -- retention ----------------------------------------------------------------------
class _Phase(IntEnum):
    COMPACT = 0
    TELEMETRY = 1
    EVENTS = 2
    ALERTS = 3
    COMMANDS = 4
    OUTBOX_ACKED = 5
    OUTBOX_OLD = 6
    DONE = 7


# Phase -> (table, key, condition, report field). Constants, never input.
_PRUNES: Final = {
    _Phase.EVENTS: ("events", "event_id", "ts < :old", "events_deleted"),
    _Phase.ALERTS: (
        "alerts",
        "alert_id",
        "state = 'cleared' AND cleared_at < :old",
        "alerts_deleted",
    ),
    # Kept past expiry so that a retried id still gets its first result.
    _Phase.COMMANDS: (
        "commands",
        "command_id",
        "created_at < :old AND expires_at < :now",
        "commands_deleted",
    ),
    _Phase.OUTBOX_ACKED: (
        "outbox",
        "seq",
        "seq <= (SELECT last_acked_seq FROM outbox_state)",
        "outbox_acked_deleted",
    ),
    _Phase.OUTBOX_OLD: ("outbox", "seq", "ts < :outbox_old", "outbox_unacked_dropped"),
}


@dataclass(slots=True)
class _RetentionRun:
    """Resumable retention: each `step` is one bounded transaction."""

    policy: RetentionPolicy
    now: int
    phase: _Phase = _Phase.COMPACT
    after_series: int = 0

    @property
    def done(self) -> bool:
        return self.phase is _Phase.DONE

    def skip(self) -> None:
        """Give up the current phase (its step failed) and go on with the next."""
        self.phase = _Phase(self.phase + 1)

    def step(self, conn: sqlite3.Connection) -> RetentionReport:
        with _transaction(conn):
            if self.phase is _Phase.COMPACT:
                # Rollups read `telemetry` only: first move every staged point there.
                moved = history.compact(conn, self.policy.rows_per_chunk)
                if moved < self.policy.rows_per_chunk:
                    self.phase = _Phase.TELEMETRY
                report = RetentionReport(raw_rows_compacted=moved)
            elif self.phase is _Phase.TELEMETRY:
                report = self._telemetry(conn)
            else:
                report = self._prune(conn)
        return report + RetentionReport(transactions=1)

    def _telemetry(self, conn: sqlite3.Connection) -> RetentionReport:
        p = self.policy
        ids = [
            int(r[0])
            for r in conn.execute(
                "SELECT series_id FROM series WHERE series_id > ? ORDER BY series_id LIMIT ?",
                (self.after_series, p.series_per_chunk),
            )
        ]
        if not ids:
            self.phase = _Phase.EVENTS
            return RetentionReport()
        self.after_series = ids[-1]
        bucket_ms = _ms(p.rollup_bucket_s)
        # Only whole buckets are folded, so a bucket is never half raw, half rollup.
        raw_cutoff = (self.now - _ms(p.raw_retention_s)) // bucket_ms * bucket_ms
        rolled = history.roll_up(
            conn, ids[0], ids[-1], raw_cutoff_ms=raw_cutoff, bucket_ms=bucket_ms
        )
        deleted = history.delete_old_rollups(
            conn, ids[0], ids[-1], cutoff_ms=self.now - _ms(p.rollup_retention_s)
        )
        return RetentionReport(raw_rows_rolled_up=rolled, rollup_rows_deleted=deleted)

    def _prune(self, conn: sqlite3.Connection) -> RetentionReport:
        p, phase = self.policy, self.phase
        if phase is _Phase.OUTBOX_OLD and p.outbox_max_age_s is None:
            self.phase = _Phase.DONE
            return RetentionReport()
        table, key, where, counter = _PRUNES[phase]
        sql = (
            f"DELETE FROM {table} WHERE {key} IN"  # noqa: S608 - constants
            f" (SELECT {key} FROM {table} WHERE {where} LIMIT :limit)"
        )
        args = {
            "old": self.now - _ms(p.events_retention_s),
            "now": self.now,
            "outbox_old": self.now - _ms(p.outbox_max_age_s or 0),
            "limit": p.rows_per_chunk,
        }
        n = conn.execute(sql, args).rowcount
        if n < p.rows_per_chunk:
            self.phase = _Phase(phase + 1)
        if n and phase is _Phase.OUTBOX_OLD:
            log.warning("dropped %d unacked outbox events older than the outbox limit", n)
        return RetentionReport(**{counter: n})


# -- the store (reads and rare writes) ----------------------------------------------
class EdgeStore:
    """The gateway's database: opened (and migrated) once at start-up.

    Reads and rare writes run on this object's own connection, from the
    thread that opened it; `query_telemetry` and `outbox_after` may also be
    called from worker threads (each gets its own read connection). The hot
    path goes through a `StoreWriter`.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._db = Database(conn, execute_plugins=False, recursive_triggers=False)
        self._applier = _Applier(conn)
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    def _reader(self) -> sqlite3.Connection:
        """This thread's connection: the store's own, or one opened for a worker thread."""
        if threading.get_ident() == self._owner:
            return self._conn
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @classmethod
    def open(cls, path: Path, *, synchronous: Synchronous = Synchronous.NORMAL) -> EdgeStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(path, synchronous, cache_kib=8192)
        try:
            _migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        self._conn.close()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writes off the hot path --------------------------------------------------
    def apply(self, *ops: WriteOp) -> None:
        """Apply ops in one transaction, now; all or nothing."""
        try:
            with _transaction(self._conn):
                self._applier.apply_batch(ops, now_ms())
        except BaseException:
            self._applier.series.forget()
            raise

    def upsert_room(self, room: Room) -> None:
        self.apply(PutRoom(room))

    def upsert_device(self, device: Device) -> None:
        self.apply(PutDevice(device))

    def remove_device(self, device_id: str) -> None:
        self.apply(RemoveDevice(device_id))

    def ack_outbox(self, seq: int) -> None:
        self.apply(AckOutbox(seq))

    def apply_retention(self, policy: RetentionPolicy, now_ms: int) -> RetentionReport:
        """Retention in small transactions on this connection (tools, tests)."""
        run = _RetentionRun(policy, now_ms)
        report = RetentionReport()
        while not run.done:
            report += run.step(self._conn)
        return report

    # -- reads ------------------------------------------------------------------------
    def list_rooms(self) -> list[Room]:
        return [
            Room(r["room_id"], r["name"], r["floor"])
            for r in self._db.table("rooms").rows_where(order_by="room_id")
        ]

    def list_devices(
        self, room_id: str | None = None, *, include_unknown: bool = False
    ) -> list[Device]:
        where = [] if include_unknown else ["registered = 1"]
        args: list[Any] = []
        if room_id is not None:
            where.append("room_id = ?")
            args.append(room_id)
        rows = self._db.table("devices").rows_where(
            " AND ".join(where) or None, args, order_by="device_id"
        )
        return [_device(r) for r in rows]

    def get_device(self, device_id: str) -> Device | None:
        rows = list(self._db.table("devices").rows_where("device_id = ?", [device_id]))
        return _device(rows[0]) if rows else None

    def load_reported(self) -> dict[str, ReportedState]:
        return {
            r["device_id"]: ReportedState(
                r["device_id"], r["version"], json.loads(r["values_json"]), r["updated_at"]
            )
            for r in self._db.table("reported_state").rows_where()
        }

    def load_desired(self) -> dict[str, DesiredState]:
        return {
            r["device_id"]: DesiredState(
                r["device_id"],
                r["version"],
                json.loads(r["values_json"]),
                r["updated_at"],
                r["updated_by"],
            )
            for r in self._db.table("desired_state").rows_where()
        }

    def get_command(self, command_id: str) -> CommandRecord | None:
        rows = list(self._db.table("commands").rows_where("command_id = ?", [command_id]))
        if not rows:
            return None
        r = rows[0]
        request = CommandRequest(
            command_id=r["command_id"],
            device_id=r["device_id"],
            name=r["name"],
            params=json.loads(r["params"]),
            expires_at=r["expires_at"],
            requested_by=r["requested_by"],
        )
        result = CommandResult(
            command_id=r["command_id"],
            device_id=r["device_id"],
            status=CommandStatus(r["status"]),
            result=json.loads(r["result"]) if r["result"] is not None else None,
            error=r["error"],
            completed_at=r["completed_at"],
        )
        return CommandRecord(request=request, result=result, created_at=r["created_at"])

    def list_alerts(
        self,
        states: Collection[AlertState] | None = None,
        room_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Newest first."""
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({', '.join('?' * len(states))})")
            args.extend(s.value for s in states)
        if room_id is not None:
            where.append("room_id = ?")
            args.append(room_id)
        if limit <= 0:
            return []
        rows = self._db.table("alerts").rows_where(
            " AND ".join(where) or None, args, order_by="raised_at DESC, alert_id", limit=limit
        )
        return [_alert(r) for r in rows]

    def open_alerts(self) -> list[Alert]:
        """Every alert not yet cleared, oldest first (to load the AlertBook)."""
        rows = self._db.table("alerts").rows_where(
            "state != ?", [AlertState.CLEARED.value], order_by="raised_at, alert_id"
        )
        return [_alert(r) for r in rows]

    def query_telemetry(
        self, device_id: str, metric: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[TelemetryPoint]:
        """Oldest first: raw points, and rollup averages where raw ones were folded."""
        return history.query_points(
            self._reader(), device_id, metric, start_ms=start_ms, end_ms=end_ms, limit=limit
        )

    def outbox_after(self, seq: int, limit: int = 1000) -> list[OutboxEntry]:
        """Events with a sequence above `seq`, in order, at most `limit`."""
        rows = (
            self._reader()
            .execute(
                "SELECT o.seq, o.ts, o.kind, o.payload, s.device_id, s.metric, o.point_ts, o.value"
                " FROM outbox o LEFT JOIN series s ON s.series_id = o.series_id"
                " WHERE o.seq > ? ORDER BY o.seq LIMIT ?",
                (seq, limit),
            )
            .fetchall()
        )
        return [_outbox_entry(*row) for row in rows]

    def outbox_last_acked(self) -> int:
        return int(self._conn.execute("SELECT last_acked_seq FROM outbox_state").fetchone()[0])

    def outbox_last_seq(self) -> int:
        return _last_seq(self._conn)

    def registry_version(self) -> int:
        """Grows whenever rooms or devices are changed by a tool beside the gateway."""
        return int(self._conn.execute("SELECT version FROM registry_state").fetchone()[0])

    def bump_registry_version(self) -> int:
        """Tell a running gateway to reload its registry (it polls the version)."""
        with _transaction(self._conn):
            row = self._conn.execute(
                "UPDATE registry_state SET version = version + 1 RETURNING version"
            ).fetchone()
        return int(row[0])

    def recent_telemetry_ts(self, per_series: int = 64) -> dict[str, set[int]]:
        """Times of the newest stored points per device, to recognise redelivered messages."""
        recent: dict[str, set[int]] = {}
        rows = self._conn.execute(
            "SELECT series_id, ts FROM telemetry_recent ORDER BY id DESC LIMIT ?",
            (per_series * 1000,),
        ).fetchall()
        series = dict(self._conn.execute("SELECT series_id, device_id FROM series").fetchall())
        for series_id, ts in rows:
            recent.setdefault(series[series_id], set()).add(int(ts))
        for series_id, device_id in series.items():
            newest = self._conn.execute(
                "SELECT ts FROM telemetry WHERE series_id = ? ORDER BY ts DESC LIMIT ?",
                (series_id, per_series),
            ).fetchall()
            recent.setdefault(device_id, set()).update(int(ts) for (ts,) in newest)
        return recent

    def recent_events(self, limit: int = 20_000) -> list[tuple[str, int, str, str]]:
        """The newest stored events (device, ts, kind, data as stored), oldest first."""
        rows = self._conn.execute(
            "SELECT device_id, ts, kind, coalesce(data, '{}') FROM events"
            " ORDER BY event_id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [(d, int(ts), k, data) for d, ts, k, data in reversed(rows)]

    def counts(self) -> StoreCounts:
        one = self._conn.execute
        page_count = int(one("PRAGMA page_count").fetchone()[0])
        page_size = int(one("PRAGMA page_size").fetchone()[0])
        return StoreCounts(
            rooms=self._db.table("rooms").count,
            devices=int(one("SELECT count(*) FROM devices WHERE registered = 1").fetchone()[0]),
            unknown_devices=int(
                one("SELECT count(*) FROM devices WHERE registered = 0").fetchone()[0]
            ),
            open_alerts=int(
                one("SELECT count(*) FROM alerts WHERE state != 'cleared'").fetchone()[0]
            ),
            commands=self._db.table("commands").count,
            series=self._db.table("series").count,
            staged_points=history.staged_rows(self._conn),
            outbox_last_seq=self.outbox_last_seq(),
            outbox_last_acked=self.outbox_last_acked(),
            size_bytes=page_count * page_size,
        )


def _device(r: Mapping[str, Any]) -> Device:
    return Device(
        device_id=r["device_id"],
        room_id=r["room_id"],
        kind=DeviceKind(r["kind"]) if r["kind"] else None,
        registered=bool(r["registered"]),
        connectivity=Connectivity(r["connectivity"]),
        last_seen=r["last_seen"],
        firmware=r["firmware"],
    )


def _alert(r: Mapping[str, Any]) -> Alert:
    return Alert(
        alert_id=r["alert_id"],
        kind=AlertKind(r["kind"]),
        severity=AlertSeverity(r["severity"]),
        state=AlertState(r["state"]),
        device_id=r["device_id"],
        room_id=r["room_id"],
        message=r["message"],
        raised_at=r["raised_at"],
        acknowledged_at=r["acknowledged_at"],
        acknowledged_by=r["acknowledged_by"],
        note=r["note"],
        cleared_at=r["cleared_at"],
    )


def _outbox_entry(  # noqa: PLR0917 - one row of the outbox query
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


# -- the writer ---------------------------------------------------------------------
@dataclass(slots=True)
class WriterStats:
    """Counters for health and metrics; read on the event loop."""

    submitted: int = 0
    committed: int = 0
    failed: int = 0
    batches: int = 0
    rejected_full: int = 0
    rejected_points: int = 0
    largest_batch: int = 0
    compacted: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Call:
    """Run `fn` in its own transaction on the writer thread (retention steps)."""

    fn: Callable[[sqlite3.Connection], Any]


class _Stop:
    pass


_STOP: Final = _Stop()
# After a failed compaction (a full disk), the next try waits this long at most.
COMPACT_RETRY_S: Final = 60.0
_CHUNK_OPS: Final = 256
# Ops travel to the thread in chunks: one queue hand-over per chunk, not per op.
_Item = list[WriteOp] | _Call | _Stop


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A waiter told whether every op from ticket `since` on was committed."""

    since: int
    callback: Callable[[bool], None]


# Failed tickets remembered for `on_outcome`; failures are rare, this is a bound.
_FAILED_KEPT: Final = 100_000


@dataclass(frozen=True, slots=True)
class _Done:
    """Thread -> loop: items up to `through` are finished."""

    through: int
    committed: int
    failures: Mapping[int, BaseException] = field(default_factory=dict)
    results: Mapping[int, Any] = field(default_factory=dict)
    rejected_points: int = 0
    batch_size: int = 0


class StoreWriter:
    """The single batching writer: one thread, one connection, many ops per commit.

    Use from one event loop. `submit` never blocks and never drops silently:
    past `max_pending` uncommitted ops it raises `WriterFullError` (counted),
    while `put` waits for room instead. Batches take whatever is queued, up to
    `max_batch` ops, lingering up to `max_delay_ms` for more.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = Synchronous.NORMAL,
        max_batch: int = 2000,
        max_delay_ms: float = 0.0,
        max_pending: int = 50_000,
        hand_over_ms: float = 1.0,
        checkpoint_interval_s: float = 1.0,
        compact_rows: int = 200_000,
        compact_interval_s: float = 300.0,
        cache_kib: int = 32768,
        max_size_bytes: int | None = None,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_delay_ms < 0:
            raise ValueError("max_batch and max_pending must be positive, max_delay_ms >= 0")
        self.path = path
        self.stats = WriterStats()
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._max_delay = max_delay_ms / 1000
        self._max_pending = max_pending
        self._checkpoint_interval = checkpoint_interval_s
        self._compact_rows = compact_rows
        self._compact_interval = compact_interval_s
        self._cache_kib = cache_kib
        self._max_size_bytes = max_size_bytes
        # Failed tickets, ascending (they are reported in ticket order).
        self._failed: list[int] = []
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitted = 0  # tickets handed out; ticket n is the n-th item
        self._finished = 0
        self._waiters: collections.deque[
            tuple[int, asyncio.Future[Any] | Callable[[], None] | _Outcome]
        ]
        self._waiters = collections.deque()
        self._space = asyncio.Event()
        self._fatal: BaseException | None = None
        self._closing = False
        self._exited: asyncio.Future[None] | None = None
        self._staged: list[WriteOp] = []
        self._hand_over_s = hand_over_ms / 1000
        self._hand_over_timer: asyncio.TimerHandle | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("writer already started")
        self._loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = self._loop.create_future()
        self._exited = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"store-writer:{self.path.name}", daemon=True
        )
        self._thread.start()
        try:
            await ready
        except BaseException as exc:
            self._fatal = exc
            raise

    async def __aenter__(self) -> StoreWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Commit everything submitted, checkpoint, stop the thread."""
        if self._thread is None or self._exited is None:
            return
        if not self._closing:
            self._hand_over()
            self._closing = True
            self._queue.put(_STOP)
        await asyncio.shield(self._exited)
        self._thread.join()

    # -- submitting ---------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Ops submitted and not yet committed (or failed)."""
        return self._submitted - self._finished

    def submit(self, op: WriteOp) -> None:
        """Queue an op without waiting; raises when closed or past `max_pending`."""
        self._check_open()
        if self.pending >= self._max_pending:
            self.stats.rejected_full += 1
            raise WriterFullError(f"{self.pending} writes waiting for the disk; try again")
        self._enqueue(op)

    async def put(self, op: WriteOp) -> None:
        """Queue an op, waiting while `max_pending` ops are uncommitted."""
        await self.wait_for_space()
        self._check_open()
        self._enqueue(op)

    @property
    def max_pending(self) -> int:
        return self._max_pending

    async def wait_below(self, ops: int) -> None:
        """Wait until at most `ops` ops are uncommitted (a low watermark)."""
        while self.pending > ops:
            self._check_open()
            self._space.clear()
            await self._space.wait()

    async def wait_for_space(self) -> None:
        await self.wait_below(self._max_pending - 1)

    async def submit_and_wait(self, op: WriteOp) -> None:
        """Queue an op and return once it is committed; raises `WriteFailedError` if not."""
        await self.put(op)
        await self._wait(self._submitted)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop once every op submitted so far is committed.

        Ops that failed are counted and logged; the callback still runs, so use
        `submit_and_wait` when one op's outcome matters.
        """
        self._check_open()
        if self._submitted == self._finished:
            callback()
        else:
            self._waiters.append((self._submitted, callback))

    @property
    def last_ticket(self) -> int:
        """The number of the op submitted last (ops are numbered from 1)."""
        return self._submitted

    def on_outcome(self, since: int, callback: Callable[[bool], None]) -> None:
        """Call `callback(ok)` on the loop once every op submitted so far is done.

        `ok` is False if any op numbered `since` or later failed: what a QoS 1
        acknowledgement needs to know about the ops of one message.
        """
        self._check_open()
        if self._submitted == self._finished:
            callback(not self._failed_between(since, self._finished))
        else:
            self._waiters.append((self._submitted, _Outcome(since, callback)))

    def _failed_between(self, first: int, last: int) -> bool:
        failed = self._failed
        i = bisect.bisect_left(failed, first)
        return i < len(failed) and failed[i] <= last

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or reported failed)."""
        if self._fatal is not None:
            raise WriterClosedError("the store writer died") from self._fatal
        if self._submitted > self._finished:
            with contextlib.suppress(WriteFailedError):
                await self._wait(self._submitted)

    async def apply_retention(self, policy: RetentionPolicy, now_ms: int) -> RetentionReport:
        """Run retention through the writer, one small transaction at a time.

        Ops submitted meanwhile are committed between the steps, so ingest
        is never held up by more than one step.
        """
        run = _RetentionRun(policy, now_ms)
        report = RetentionReport()
        while not run.done:
            self._check_open()
            await self.wait_for_space()
            self._enqueue(_Call(run.step))
            try:
                step: RetentionReport = await self._wait(self._submitted)
            except WriteFailedError as exc:
                # On a full disk the steps that need new pages (moving staged
                # points, rollups) fail; the deleting steps after them free space.
                log.warning("retention: %s step failed (%s)", run.phase.name.lower(), exc.__cause__)
                run.skip()
                step = RetentionReport(failed_steps=1)
            report += step
        return report

    def _check_open(self) -> None:
        if self._fatal is not None:
            raise WriterClosedError("the store writer died") from self._fatal
        if self._closing or self._thread is None:
            raise WriterClosedError("the store writer is not running")

    def _enqueue(self, item: WriteOp | _Call) -> None:
        self._submitted += 1
        self.stats.submitted += 1
        if isinstance(item, _Call):
            self._hand_over()
            self._queue.put(item)
            return
        # Every hand-over wakes the thread, which then competes with the event
        # loop for the GIL; one per op cost more than the SQL. Ops are handed
        # over in chunks, at most `hand_over_ms` after the first of them.
        self._staged.append(item)
        if len(self._staged) >= _CHUNK_OPS:
            self._hand_over()
        elif self._hand_over_timer is None:
            assert self._loop is not None
            self._hand_over_timer = self._loop.call_later(self._hand_over_s, self._hand_over)

    def _hand_over(self) -> None:
        if self._hand_over_timer is not None:
            self._hand_over_timer.cancel()
            self._hand_over_timer = None
        if self._staged:
            chunk, self._staged = self._staged, []
            self._queue.put(chunk)

    def _wait(self, ticket: int) -> asyncio.Future[Any]:
        assert self._loop is not None
        self._hand_over()  # someone waits: do not let the chunk linger
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiters.append((ticket, future))
        return future

    # -- completion, on the loop ----------------------------------------------------
    def _on_done(self, done: _Done) -> None:
        self._finished = done.through
        stats = self.stats
        stats.committed += done.committed
        stats.failed += len(done.failures)
        stats.rejected_points += done.rejected_points
        if done.batch_size:
            stats.batches += 1
            stats.largest_batch = max(stats.largest_batch, done.batch_size)
        for error in done.failures.values():
            stats.last_error = str(error)
        if done.failures:
            if len(self._failed) > _FAILED_KEPT:
                del self._failed[: len(self._failed) - _FAILED_KEPT // 2]
            self._failed.extend(sorted(done.failures))
        waiters = self._waiters
        while waiters and waiters[0][0] <= done.through:
            ticket, waiter = waiters.popleft()
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    self._resolve(waiter, ticket, done)
                continue
            try:  # one bad callback must not strand the others
                if isinstance(waiter, _Outcome):
                    waiter.callback(not self._failed_between(waiter.since, ticket))
                else:
                    waiter()
            except Exception:
                log.exception("store writer callback failed")
        if not waiters:
            self._failed.clear()
        if self.pending < self._max_pending:
            self._space.set()

    @staticmethod
    def _resolve(waiter: asyncio.Future[Any], ticket: int, done: _Done) -> None:
        failure = done.failures.get(ticket)
        if failure is None:
            waiter.set_result(done.results.get(ticket))
            return
        error = WriteFailedError(f"write not committed: {failure}")
        error.__cause__ = failure
        waiter.set_exception(error)

    def _on_exit(self, error: BaseException | None) -> None:
        if error is not None:
            self._fatal = error
            self.stats.last_error = str(error)
            while self._waiters:
                _, waiter = self._waiters.popleft()
                if isinstance(waiter, _Outcome):
                    with contextlib.suppress(Exception):
                        waiter.callback(False)
                elif isinstance(waiter, asyncio.Future) and not waiter.done():
                    failure = WriterClosedError("the store writer died")
                    failure.__cause__ = error
                    waiter.set_exception(failure)
            self._space.set()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    def _report(self, done: _Done) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(self._on_done, done)

    # -- the thread -----------------------------------------------------------------
    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = _connect(self.path, self._synchronous, cache_kib=self._cache_kib)
            _migrate(conn)
            if self._max_size_bytes is not None:
                _limit_size(conn, self._max_size_bytes)
        except BaseException as exc:
            loop.call_soon_threadsafe(_fail, ready, exc)
            loop.call_soon_threadsafe(self._on_exit, exc)
            return
        loop.call_soon_threadsafe(_succeed, ready)
        error: BaseException | None = None
        try:
            _WriterThread(self, conn).run()
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except BaseException as exc:
            log.exception("store writer died")
            error = exc
        finally:
            conn.close()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_exit, error)


def _succeed(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _fail(future: asyncio.Future[None], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


class _WriterThread:
    """The body of the writer thread: gather a batch, commit it, report."""

    def __init__(self, writer: StoreWriter, conn: sqlite3.Connection) -> None:
        self._w = writer
        self._conn = conn
        self._applier = _Applier(conn)
        self._count = 0  # items taken off the queue, = the last ticket seen
        self._last_checkpoint = self._last_compact = time.monotonic()
        self._dirty = False
        self._staged = history.staged_rows(conn)
        self._compacting = False
        self._compact_retry_at = 0.0

    def run(self) -> None:
        w = self._w
        q = w._queue
        held: _Item | None = None
        while True:
            if held is not None:
                item, held = held, None
            else:
                try:
                    item = q.get(timeout=w._checkpoint_interval)
                except queue.Empty:
                    self._housekeeping()
                    continue
            if isinstance(item, _Stop):
                return
            if isinstance(item, _Call):
                self._count += 1
                self._call(item)
                continue
            batch: list[WriteOp] = list(item)
            deadline = time.monotonic() + w._max_delay
            while len(batch) < w._max_batch:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        nxt = q.get(timeout=remaining)
                    except queue.Empty:
                        break
                if isinstance(nxt, _Stop | _Call):
                    held = nxt
                    break
                batch.extend(nxt)
            # A chunk may carry the batch past max_batch: commit in slices.
            for start in range(0, len(batch), w._max_batch):
                self._commit(batch[start : start + w._max_batch])
            self._housekeeping()

    def _commit(self, batch: list[WriteOp]) -> None:
        first = self._count + 1
        self._count += len(batch)
        rejected_before = self._applier.rejected_points
        failures: dict[int, BaseException] = {}
        now = now_ms()
        try:
            with _transaction(self._conn):
                self._applier.apply_batch(batch, now)
        except _OP_ERRORS as exc:
            log.debug("batch failed (%s); retrying op by op", exc)
            self._applier.rejected_points = rejected_before  # rolled back: counted again
            failures = self._commit_one_by_one(batch, first, now)
        if failures:
            self._applier.series.forget()
            log.error(
                "%d of %d store writes failed; first error: %s",
                len(failures),
                len(batch),
                next(iter(failures.values())),
            )
        self._dirty = True
        self._w._report(
            _Done(
                through=self._count,
                committed=len(batch) - len(failures),
                failures=failures,
                rejected_points=self._applier.rejected_points - rejected_before,
                batch_size=len(batch),
            )
        )

    def _commit_one_by_one(
        self, batch: list[WriteOp], first: int, now: int
    ) -> dict[int, BaseException]:
        """Slow path after a failed batch: each op in a savepoint, bad ones rolled back."""
        self._applier.series.forget()
        failures: dict[int, BaseException] = {}
        conn = self._conn
        try:
            with _transaction(conn):
                for ticket, op in enumerate(batch, start=first):
                    conn.execute("SAVEPOINT op")
                    try:
                        self._applier.apply_one(op, now)
                    except _OP_ERRORS as exc:
                        conn.execute("ROLLBACK TO op")
                        failures[ticket] = exc
                    conn.execute("RELEASE op")
        except sqlite3.Error as exc:
            return dict.fromkeys(range(first, first + len(batch)), exc)
        return failures

    def _call(self, call: _Call) -> None:
        ticket = self._count
        try:
            result = call.fn(self._conn)
        except Exception as exc:
            self._w._report(_Done(through=ticket, committed=0, failures={ticket: exc}))
            return
        self._dirty = True
        self._w._report(_Done(through=ticket, committed=1, results={ticket: result}))

    def _housekeeping(self) -> None:
        self._maybe_compact()
        self._maybe_checkpoint()

    def _maybe_compact(self) -> None:
        """Move staged telemetry into its index, one chunk between two batches."""
        w = self._w
        self._staged += self._applier.staged_points
        self._applier.staged_points = 0
        now = time.monotonic()
        if not self._compacting:
            if now < self._compact_retry_at:
                return
            due = self._staged > 0 and now - self._last_compact >= w._compact_interval
            self._compacting = due or self._staged >= w._compact_rows
        if not self._compacting:
            return
        chunk = max(1, w._compact_rows // 4)
        try:
            with _transaction(self._conn):
                moved = history.compact(self._conn, chunk)
        except sqlite3.Error as exc:
            # A full disk: try again in a while, not after every batch.
            log.warning("telemetry compaction failed: %s", exc)
            self._compacting = False
            self._compact_retry_at = now + min(COMPACT_RETRY_S, w._compact_interval)
            return
        self._dirty = True
        self._staged = max(0, self._staged - moved)
        w.stats.compacted += moved  # an int bump; read on the loop for health only
        if moved < chunk:
            self._compacting = False
            self._staged = 0
            self._last_compact = now

    def _maybe_checkpoint(self) -> None:
        # Under NORMAL the WAL is synced at checkpoints: a periodic one bounds
        # what a power cut can take to about `checkpoint_interval_s`.
        now = time.monotonic()
        if self._dirty and now - self._last_checkpoint >= self._w._checkpoint_interval:
            self._last_checkpoint = now
            self._dirty = False
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)


# What a bad op (or a failing disk) raises while a batch is applied.
_OP_ERRORS: Final = (sqlite3.Error, ValueError, TypeError, KeyError, StoreError)
