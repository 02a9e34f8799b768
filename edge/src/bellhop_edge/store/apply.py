"""Write ops to SQL: what each op means, on either write path.

`Applier` runs ops on one connection inside a transaction its caller owns:
the batching writer thread (`writer`) and the store's own rare writes
(`reads.EdgeStore.apply`) both use it, so an op means the same thing on
either path. Every op that the cloud must hear about appends its outbox row
in the same transaction as the record it mirrors; consecutive telemetry ops
become one bulk insert (see `history`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2

from bellhop_edge import convert
from bellhop_edge.core.commands import CommandRecord
from bellhop_edge.core.model import Alert, CommandStatus, Device
from bellhop_edge.core.ops import (
    PutAlert,
    PutCommand,
    PutDesired,
    PutDevice,
    PutDeviceStatus,
    PutEvent,
    PutLastSeen,
    PutMessage,
    PutReported,
    PutRoom,
    PutTelemetry,
    RemoveDevice,
    WriteOp,
)
from bellhop_edge.store import desired, history, outbox
from bellhop_edge.store.influx_lines import InfluxLines
from bellhop_edge.store.outbox import OutboxKind

__all__ = ["FINAL_COMMAND", "Applier", "to_json"]

# Commands whose final status must never be overwritten by a later write.
FINAL_COMMAND: Final = ("succeeded", "failed", "expired")
# One statement for a whole batch's receipts (see history.py for why json_each).
_INSERT_RECEIPTS: Final = "INSERT INTO receipts (key) SELECT value FROM json_each(?1) ORDER BY key"


def to_json(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    return json.dumps(dict(values), separators=(",", ":"), allow_nan=False)


class Applier:
    """Turns ops into SQL on one connection; the caller owns the transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.series = history.SeriesIndex(conn)
        # Lines for the InfluxDB sink, stored only while it is on (influx_lines.py).
        self.influx = InfluxLines(conn)
        self.rejected_points = 0
        self.staged_points = 0  # appended to telemetry_recent by this applier

    def apply_batch(self, ops: Sequence[WriteOp], now: int) -> None:
        """Apply ops in order; consecutive telemetry ops become one bulk insert.

        A `PutMessage` is its ops in order, plus its receipt; receipts are
        inserted in one statement at the end, in the same transaction.
        """
        rows: list[tuple[int, int, float]] = []
        receipts: list[int] = []
        for op in ops:
            if isinstance(op, PutTelemetry):
                self._rows(op, rows)
                continue
            if isinstance(op, PutMessage):
                receipts.append(op.receipt)
                for inner in op.ops:
                    if isinstance(inner, PutTelemetry):
                        self._rows(inner, rows)
                        continue
                    if rows:
                        self._insert(rows, now)
                        rows = []
                    self.apply_one(inner, now)
                continue
            if rows:
                self._insert(rows, now)
                rows = []
            self.apply_one(op, now)
        self._insert(rows, now)
        if receipts:
            self._conn.execute(_INSERT_RECEIPTS, (orjson.dumps(receipts).decode(),))

    def _rows(self, op: PutTelemetry, rows: list[tuple[int, int, float]]) -> None:
        series_id = self.series.id_for
        for p in op.points:
            value = float(p.value)
            # JSON (and so the bulk insert) has no NaN or infinity.
            if math.isfinite(value):
                rows.append((series_id(p.device_id, p.metric), int(p.ts), value))
            else:
                self.rejected_points += 1

    def _insert(self, rows: list[tuple[int, int, float]], now: int) -> None:
        if not rows:
            return
        first, last = history.insert_points(self._conn, rows, outbox_ts=now)
        self.influx.store(rows, first, last)
        self.staged_points += len(rows)

    def apply_one(self, op: WriteOp, now: int) -> None:
        conn = self._conn
        if isinstance(op, PutTelemetry | PutMessage):
            self.apply_batch((op,), now)
        elif isinstance(op, PutReported):
            s = op.state
            conn.execute(
                "INSERT INTO reported_state (device_id, version, values_json, updated_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " version = excluded.version, values_json = excluded.values_json,"
                " updated_at = excluded.updated_at",
                (s.device_id, s.version, to_json(s.values), s.updated_at),
            )
            self._outbox(now, OutboxKind.STATE, bridge_pb2.OutboxEvent(state=convert.reported(s)))
        elif isinstance(op, PutDesired):
            d = op.state
            conn.execute(
                "INSERT INTO desired_state (device_id, version, values_json, updated_at,"
                " updated_by, fields_json, outcomes_json, change_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET"
                " version = excluded.version, values_json = excluded.values_json,"
                " updated_at = excluded.updated_at, updated_by = excluded.updated_by,"
                " fields_json = excluded.fields_json, outcomes_json = excluded.outcomes_json,"
                " change_id = excluded.change_id",
                (
                    d.device_id,
                    d.version,
                    to_json(d.values),
                    d.updated_at,
                    d.updated_by,
                    desired.fields_json(d.fields),
                    desired.outcomes_json(d.outcomes),
                    d.change_id or None,
                ),
            )
            self._outbox(
                now, OutboxKind.DESIRED, bridge_pb2.OutboxEvent(desired=convert.desired(d))
            )
        elif isinstance(op, PutEvent):
            e = op.event
            conn.execute(
                "INSERT INTO events (device_id, kind, ts, data) VALUES (?, ?, ?, ?)",
                (e.device_id, e.kind.value, e.ts, to_json(e.data)),
            )
            self._outbox(
                now, OutboxKind.DEVICE_EVENT, bridge_pb2.OutboxEvent(device_event=convert.event(e))
            )
        elif isinstance(op, PutDevice):
            self._put_device(op.device, now)
            self.influx.forget()  # its room or kind may have changed: tags of its points
        elif isinstance(op, PutDeviceStatus):
            self._put_device_status(op.device, now)
        elif isinstance(op, RemoveDevice):
            self._remove_device(op.device_id, now)
            self.influx.forget()
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
            outbox.ack(self._conn, op.seq, op.lane)

    def _outbox(self, now: int, kind: OutboxKind, event: bridge_pb2.OutboxEvent) -> None:
        outbox.append(self._conn, now, kind, event)

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
                to_json(req.params),
                req.expires_at,
                req.requested_by,
                res.status.value,
                to_json(res.result),
                res.error,
                record.created_at,
                res.completed_at,
                *FINAL_COMMAND,
            ),
        ).rowcount
        if changed and res.status is not CommandStatus.PENDING:
            self._outbox(
                now,
                OutboxKind.COMMAND_RESULT,
                bridge_pb2.OutboxEvent(command_result=convert.command_result(res)),
            )
