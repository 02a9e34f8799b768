"""The gateway's database for reads and rare writes (start-up, tools, tests).

    with EdgeStore.open(path) as store:      # migrates on open
        store.upsert_room(Room("101", "Room 101", 1))
        rooms = store.list_rooms()

The hot path goes through `writer.StoreWriter` instead. Both apply ops with
the same `apply.Applier`, so an op means the same thing on either path.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from sqlite_utils import Database

from bellhop_edge.clock import now_ms
from bellhop_edge.config import RetentionConfig
from bellhop_edge.core.commands import CommandRecord, CommandRequest
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
    DeviceKind,
    ReportedState,
    Room,
    TelemetryPoint,
)
from bellhop_edge.core.ops import AckOutbox, PutDevice, PutRoom, RemoveDevice, WriteOp
from bellhop_edge.errors import StoreError
from bellhop_edge.store import desired, history, outbox
from bellhop_edge.store.apply import Applier
from bellhop_edge.store.outbox import OutboxEntry
from bellhop_edge.store.retention import RetentionReport, RetentionRun
from bellhop_edge.store.schema import BUSY_TIMEOUT_MS, Synchronous, connect, migrate, transaction

# How long `close` waits for reads in flight on worker threads.
CLOSE_WAIT_S: Final = BUSY_TIMEOUT_MS / 1000 + 5

__all__ = ["EdgeStore", "StoreCounts"]


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
    # Events not yet acknowledged by the cloud, over both lanes.
    outbox_pending: int
    size_bytes: int


class EdgeStore:
    """The gateway's database: opened (and migrated) once at start-up.

    Reads and rare writes run on this object's own connection, from the
    thread that opened it; `query_telemetry` and the `outbox_*` reads may also
    be called from worker threads (each gets its own read connection, and
    `close` waits for reads in flight). The hot path goes through a `StoreWriter`.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._db = Database(conn, execute_plugins=False, recursive_triggers=False)
        self._applier = Applier(conn)
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        # Reads in flight on worker threads; `close` waits for them, since closing a
        # connection that another thread is reading through crashes the process.
        self._reading_now = 0
        self._closed = False
        self._readers_lock = threading.Condition()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (the store's own, or one opened for a worker thread),
        held open until the read is over; StoreError once the store is closing."""
        if threading.get_ident() == self._owner:
            yield self._conn
            return
        with self._readers_lock:
            if self._closed:
                raise StoreError("the store is closed")
            self._reading_now += 1
        try:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._local.conn = conn
                with self._readers_lock:
                    self._readers.append(conn)
            yield conn
        finally:
            with self._readers_lock:
                self._reading_now -= 1
                self._readers_lock.notify_all()

    @classmethod
    def open(cls, path: Path, *, synchronous: Synchronous = Synchronous.NORMAL) -> EdgeStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(path, synchronous, cache_kib=8192)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        return cls(path, conn)

    def close(self) -> None:
        with self._readers_lock:
            self._closed = True
            # A read in flight finishes first (bounded by SQLite's busy timeout).
            self._readers_lock.wait_for(lambda: self._reading_now == 0, CLOSE_WAIT_S)
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
            with transaction(self._conn):
                self._applier.apply_batch(ops, now_ms())
        except BaseException:
            self._applier.series.forget()
            self._applier.influx.forget()
            raise

    def upsert_room(self, room: Room) -> None:
        self.apply(PutRoom(room))

    def upsert_device(self, device: Device) -> None:
        self.apply(PutDevice(device))

    def remove_device(self, device_id: str) -> None:
        self.apply(RemoveDevice(device_id))

    def ack_outbox(self, seq: int, lane: int = outbox.BULK) -> None:
        self.apply(AckOutbox(seq, lane))

    def apply_retention(self, policy: RetentionConfig, now: int) -> RetentionReport:
        """Retention in small transactions on this connection (tools, tests)."""
        run = RetentionRun(policy, now)
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
                desired.fields_from(r["fields_json"]),
                desired.outcomes_from(r["outcomes_json"]),
                r["change_id"] or "",
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

    def get_alert(self, alert_id: str) -> Alert | None:
        rows = list(self._db.table("alerts").rows_where("alert_id = ?", [alert_id]))
        return _alert(rows[0]) if rows else None

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
        with self._reading() as conn:
            return history.query_points(
                conn, device_id, metric, start_ms=start_ms, end_ms=end_ms, limit=limit
            )

    def outbox_after(
        self, seq: int, limit: int = 1000, lane: int | None = None
    ) -> list[OutboxEntry]:
        """Events of `lane` (None: every lane) above `seq`, in order, at most `limit`."""
        with self._reading() as conn:
            return outbox.read_after(conn, seq, limit, lane)

    def outbox_last_acked(self, lane: int = outbox.BULK) -> int:
        return self.outbox_acked()[lane]

    def outbox_acked(self) -> dict[int, int]:
        """Each lane's last acknowledged sequence."""
        with self._reading() as conn:
            return outbox.last_acked(conn)

    def outbox_backlog(self) -> outbox.Backlog:
        """What the cloud has not acknowledged yet, per lane, and the oldest's time."""
        with self._reading() as conn:
            return outbox.backlog(conn)

    def outbox_last_seq(self) -> int:
        with self._reading() as conn:
            return outbox.last_seq(conn)

    def registry_version(self) -> int:
        """Grows whenever rooms or devices are changed by a tool beside the gateway."""
        return int(self._conn.execute("SELECT version FROM registry_state").fetchone()[0])

    def bump_registry_version(self) -> int:
        """Tell a running gateway to reload its registry (it polls the version)."""
        with transaction(self._conn):
            row = self._conn.execute(
                "UPDATE registry_state SET version = version + 1 RETURNING version"
            ).fetchone()
        return int(row[0])

    def receipts(self, limit: int) -> list[int]:
        """The replay keys of the newest `limit` QoS 1 messages committed, oldest first."""
        rows = self._conn.execute(
            "SELECT key FROM receipts ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return [int(key) for (key,) in reversed(rows)]

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
            outbox_pending=outbox.backlog(self._conn).total,
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
