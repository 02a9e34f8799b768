"""The gateway's InfluxDB sink: telemetry and device events to an InfluxDB on the LAN.

    async with InfluxSink.running(config) as sink:   # None when `[influx]` is off
        ...
        sink.lag()                                   # points and seconds behind

The outbox is the gateway's one durable, ordered record of what it applied
(every point and device event, seq from AUTOINCREMENT, never reused), so the
sink reads it after its own position (`influx_sink.cursor`, schema v7) and
moves that position only after InfluxDB accepted a batch
(`bellhop_bridge.influx_core`). Runs of points come as the lines the writer
stored with them (store/influx_lines.py, schema v9), the rest from the rows.
The bridge's acknowledgements do not matter here; retention deleting a row the
sink has not written yet is counted by the schema's trigger as lost. See
docs/influx.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge.influx_core import (
    MEASUREMENT_EVENT,
    Batch,
    Entry,
    SinkCore,
    line,
)
from bellhop_bridge.influx_driver import ClientWriter, run_sink
from google.protobuf import json_format

from bellhop_edge import influx_client
from bellhop_edge.config import EdgeConfig
from bellhop_edge.store import outbox
from bellhop_edge.store.influx_lines import at_most, runs_after, telemetry_prefix
from bellhop_edge.store.schema import Synchronous, connect, transaction

__all__ = ["InfluxLag", "InfluxSink", "OutboxSource"]

log = logging.getLogger(__name__)

# The sink's own connection reads in large sequential runs: a modest cache is enough.
CACHE_KIB: Final = 8 * 1024
# Rooms and kinds of devices are read again this often (and whenever one is unknown).
DEVICES_EVERY_S: Final = 30.0
# Counting the backlog scans it: often enough for a gauge, rarely enough to cost nothing.
LAG_EVERY_S: Final = 5.0
LOG_LAG_EVERY_S: Final = 60.0
STOP_TIMEOUT_S: Final = 5.0
# Batches read and formatted while the one before is being written: reading the store and
# InfluxDB's answer overlap; two smooth out a slow read without holding much memory.
READ_AHEAD: Final = 2

_EVENT_NAMES: Final = {
    v: k.removeprefix("EVENT_KIND_").lower() for k, v in common_pb2.EventKind.items()
}
_ALERT_KINDS: Final = {
    v: k.removeprefix("ALERT_KIND_").lower() for k, v in common_pb2.AlertKind.items()
}
_SEVERITIES: Final = {
    v: k.removeprefix("ALERT_SEVERITY_").lower() for k, v in common_pb2.AlertSeverity.items()
}
_Stamp = Literal["raised_at", "acknowledged_at", "cleared_at"]
_ALERT_STATES: Final[dict[int, tuple[str, _Stamp]]] = {
    common_pb2.ALERT_STATE_RAISED: ("raised", "raised_at"),
    common_pb2.ALERT_STATE_ACKNOWLEDGED: ("acknowledged", "acknowledged_at"),
    common_pb2.ALERT_STATE_CLEARED: ("cleared", "cleared_at"),
}
_CONNECTIVITY: Final = {
    common_pb2.CONNECTIVITY_ONLINE: True,
    common_pb2.CONNECTIVITY_OFFLINE: False,
}
# Telemetry, device events, alert changes, device records (connectivity); by field number.
_KINDS: Final = "3, 5, 6, 8"
# As few columns as will do (each costs per row in Python): a writable point's series,
# or minus the row's kind for anything else (a record, read again by its seq, or a
# point whose value is not finite). No join: series are looked up in the sink's own
# map of line prefixes.
_READ: Final = f"""
SELECT seq,
    CASE WHEN kind = 3 AND value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308
    THEN series_id ELSE -kind END,
    point_ts, value
FROM outbox WHERE seq > ? AND seq < ? AND kind IN ({_KINDS}) ORDER BY seq LIMIT ?
"""  # noqa: S608 - constants
_NO_BOUND: Final = 2**63 - 1
_RECORD_KINDS: Final = frozenset(int(k) for k in _KINDS.split(","))
_RECORDS: Final = (
    "SELECT seq, kind FROM outbox WHERE seq > ? AND seq <= ? AND kind != 3 ORDER BY seq"
)
_PRESENT: Final = "SELECT count(*) FROM outbox WHERE seq > ? AND seq <= ?"
_APPLIED: Final = "SELECT ts FROM outbox WHERE seq = ?"
_RECORD: Final = "SELECT ts, payload FROM outbox WHERE seq = ?"
_TELEMETRY: Final = int(outbox.OutboxKind.TELEMETRY)


@dataclass(frozen=True, slots=True)
class InfluxLag:
    """How far InfluxDB is behind the gateway's store, and what the sink has done."""

    points_behind: int
    seconds_behind: float
    written: int
    lost: int
    failures: int


class OutboxSource:
    """The sink's `Source` over the gateway's SQLite store; every call runs in a thread.

    One connection, used by one thread at a time (a lock): a read ahead
    (`run_sink(read_ahead=...)`) may run while a batch is committed.
    """

    def __init__(self, conn: sqlite3.Connection, *, hotel_id: str, org: str | None) -> None:
        self._conn = conn
        # The lines it deletes once written are copies of points the store keeps: zeroing
        # every page they free (this SQLite's build default) wrote about 0.5 MB to the
        # WAL a batch and took 1 ms of its commit; FAST zeroes only what it writes anyway.
        conn.execute("PRAGMA secure_delete = FAST")
        self._lock = threading.Lock()
        self._hotel_id = hotel_id
        self._org = org
        self._devices: dict[str, tuple[str | None, str | None]] = {}
        # series_id -> "telemetry,<tags> <metric>=": a point's line is this, its value
        # and its time (the tags escaped once per series, not once per point).
        self._prefixes: dict[int, str] = {}
        # Each device's connectivity as last written: a device record only becomes a
        # point when it changed (or for the first record after a start).
        self._online: dict[str, bool] = {}
        self._devices_at = 0.0
        self.cursor = 0
        self.lost = 0
        # Entries after the cursor, and the applied time of the oldest of them.
        self.backlog: tuple[int, int | None] = (0, None)
        self._backlog_at = 0.0

    def open(self) -> None:
        """Turn the sink on; the first time, from the outbox's end (what comes next)."""
        with self._lock, transaction(self._conn):
            enabled, cursor, lost = self._conn.execute(
                "SELECT enabled, cursor, lost FROM influx_sink WHERE id = 1"
            ).fetchone()
            if not enabled:
                cursor = outbox.last_seq(self._conn)
                self._conn.execute("DELETE FROM influx_lines")
            # The writer stores points' lines with these tags from the next transaction on.
            self._conn.execute(
                "UPDATE influx_sink SET enabled = 1, cursor = ?, org = ?, hotel = ? WHERE id = 1",
                (cursor, self._org, self._hotel_id),
            )
        self.cursor, self.lost = int(cursor), int(lost)
        with self._lock:
            self._count_backlog(force=True)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    async def read(self, after: int | None, limit: int) -> Sequence[Entry]:
        return await asyncio.to_thread(self._read, after, limit)

    async def commit(self, batch: Batch) -> None:
        await asyncio.to_thread(self._commit, batch.last)

    def _read(self, after: int | None, limit: int) -> list[Entry]:
        """Up to `limit` records after `after`: the runs of points the writer stored
        as lines taken as they are (the last one cut to what fits), anything else read
        from the outbox's rows."""
        with self._lock:
            start = self.cursor if after is None else after
            self._count_backlog()
            self._load_devices()
            entries: list[Entry] = []
            got = 0
            while got < limit:
                stored, bound = self._stored(start, limit - got)
                if stored:
                    entries.extend(stored)
                    got += sum(e.count for e in stored)
                    start = stored[-1].key
                    continue
                rows = self._rows(start, bound, limit - got)
                got += sum(e.count for e in rows)
                entries.extend(rows)
                if bound is None or got >= limit:
                    break
                # Nothing else below the next stored run: go on from there.
                start = bound - 1
            if entries:
                first = self._conn.execute(_APPLIED, (entries[0].key,)).fetchone()
                applied = int(first[0]) if first else int(time.time() * 1000)
                for e in entries:
                    e.applied_ms = applied
            return entries

    def _stored(self, start: int, want: int) -> tuple[list[Entry], int | None]:
        """Stored runs right after `start` and the records among them, in seq order, at
        most `want` records (a run cut if need be); else none, and the seq below which
        the outbox's rows are to be read first (None: no stored run after `start`)."""
        runs = runs_after(self._conn, start, want)
        if not runs:
            return [], None
        got = sum(last - first + 1 for first, last, _ in runs)
        # A run is whole (retention deleting one of its points deletes it: the schema's
        # trigger), so the range's points are all in runs unless some were applied without
        # lines (the sink off or too far behind): those are read from the outbox first.
        # All the runs, else the first alone.
        first_run = (runs[0][1], runs[0][1] - runs[0][0] + 1)
        for end, count in ((runs[-1][1], got), first_run, (runs[0][0] - 1, 0)):
            records = self._conn.execute(_RECORDS, (start, end)).fetchall()
            present = int(self._conn.execute(_PRESENT, (start, end)).fetchone()[0])
            if present - len(records) == count:
                break
        else:
            return [], runs[0][0]  # points without lines before the first run: those first
        if count == 0:
            # The first run is short of points (never with the trigger): from the outbox.
            return [], runs[0][1] + 1
        entries: list[Entry] = []
        pending = iter(records)
        record = next(pending, None)
        for first, last, text in runs:
            if last > end:
                break
            while record is not None and record[0] < first:
                self._add_record(entries, *record)
                record = next(pending, None)
            entries.append(Entry(last, text, 0, last - first + 1))
        return at_most(entries, want), None

    def _add_record(self, entries: list[Entry], seq: int, kind: int) -> None:
        if kind in _RECORD_KINDS:
            entries.append(Entry(seq, self._record_line(seq, kind), 0))

    def _rows(self, start: int, bound: int | None, limit: int) -> list[Entry]:
        """Records after `start` (and below `bound`), row by row from the outbox."""
        args = (start, _NO_BOUND if bound is None else bound, limit)
        rows = self._conn.execute(_READ, args).fetchall()
        if not rows:
            return []
        prefixes = self._prefixes
        try:
            # The common case, a run of writable points: one comprehension, one entry.
            lines = [f"{prefixes[sid]}{value!r} {ts}" for _, sid, ts, value in rows]
        except KeyError:  # a record, a new series, a value that cannot be written
            return self._mixed(rows, 0)
        return [Entry(rows[-1][0], "\n".join(lines), 0, len(rows))]

    def _mixed(
        self, rows: list[tuple[int, int, int | None, float | None]], applied: int
    ) -> list[Entry]:
        """Rows one by one: runs of points as one entry each, records and lost points
        as entries of their own, in key order."""
        entries: list[Entry] = []
        run: list[str] = []
        last = 0
        for seq, sid, ts, value in rows:
            if sid > 0:
                prefix = self._prefixes.get(sid) or self._prefix(sid)
                if prefix:
                    run.append(f"{prefix}{value!r} {ts}")
                    last = seq
                    continue
            if run:
                entries.append(Entry(last, "\n".join(run), applied, len(run)))
                run = []
            if sid == -_TELEMETRY:
                entries.append(Entry(seq, None, applied))  # not finite: InfluxDB would refuse it
            else:
                entries.append(Entry(seq, self._record_line(seq, -sid), applied))
        if run:
            entries.append(Entry(last, "\n".join(run), applied, len(run)))
        return entries

    def _commit(self, last: int) -> None:
        with self._lock, transaction(self._conn):
            self._conn.execute(
                "UPDATE influx_sink SET cursor = max(cursor, ?) WHERE id = 1", (last,)
            )
            # Lines written are not kept: the stored text is only ever the backlog.
            self._conn.execute("DELETE FROM influx_lines WHERE last_seq <= ?", (last,))
            self.lost = int(
                self._conn.execute("SELECT lost FROM influx_sink WHERE id = 1").fetchone()[0]
            )
        self.cursor = max(self.cursor, last)

    def _prefix(self, series_id: int) -> str:
        """A series not in the map yet: the map read again (new series, rooms or kinds)."""
        self._load_devices(force=True)
        rows = self._conn.execute("SELECT series_id, device_id, metric FROM series")
        for sid, device_id, metric in rows:
            if sid not in self._prefixes:
                room, kind = self._devices.get(device_id, (None, None))
                self._prefixes[sid] = telemetry_prefix(
                    self._org, self._hotel_id, device_id, room=room, kind=kind, metric=metric
                )
        return self._prefixes.get(series_id, "")

    def _tags(self, device_id: str, room: str | None = None) -> dict[str, str | None]:
        known_room, kind = self._devices.get(device_id, (None, None))
        return {
            "org": self._org,
            "hotel": self._hotel_id,
            "room": room or known_room,
            "device": device_id,
            "kind": kind,
        }

    def _record_line(self, seq: int, kind: int) -> str | None:
        """A device event's, an alert change's or a connectivity change's line."""
        row = self._conn.execute(_RECORD, (seq,)).fetchone()
        if row is None or row[1] is None:
            return None  # gone since the read (retention): lost
        ts, payload = row
        record = bridge_pb2.OutboxEvent.FromString(payload)
        if kind == outbox.OutboxKind.DEVICE_EVENT:
            return self._event_line(record.device_event)
        if kind == outbox.OutboxKind.ALERT:
            return self._alert_line(record.alert)
        return self._connectivity_line(record.device, ts)

    def _event_line(self, event: common_pb2.DeviceEvent) -> str | None:
        self._known(event.device_id)
        data = json_format.MessageToDict(event.data)
        fields: dict[str, float | int | bool | str] = {"count": 1}
        for key, value in data.items():
            if key != "count" and isinstance(value, bool | int | float | str):
                fields[key] = value
        tags = {**self._tags(event.device_id), "event": _EVENT_NAMES.get(event.kind, "unknown")}
        return line(MEASUREMENT_EVENT, tags, fields, event.ts.ToMilliseconds())

    def _alert_line(self, alert: common_pb2.Alert) -> str | None:
        state = _ALERT_STATES.get(alert.state)
        if state is None:
            return ""  # no state to tell: nothing to write, nothing lost
        name, stamp = state
        at = getattr(alert, stamp) if alert.HasField(stamp) else alert.raised_at
        self._known(alert.device_id)
        tags = {
            **self._tags(alert.device_id, alert.room_id or None),
            "event": "alert",
            "alert": _ALERT_KINDS.get(alert.kind, "unspecified"),
            "severity": _SEVERITIES.get(alert.severity, "unspecified"),
        }
        return line(MEASUREMENT_EVENT, tags, {"count": 1, "state": name}, at.ToMilliseconds())

    def _connectivity_line(self, device: common_pb2.Device, ts: int) -> str:
        online = _CONNECTIVITY.get(device.connectivity)
        if online is None or self._online.get(device.device_id) is online:
            return ""  # a registry change, or the same connectivity again
        self._online[device.device_id] = online
        self._known(device.device_id)
        tags = {**self._tags(device.device_id, device.room_id or None), "event": "connectivity"}
        return line(MEASUREMENT_EVENT, tags, {"count": 1, "online": online}, ts) or ""

    def _known(self, device_id: str) -> None:
        if device_id not in self._devices:
            self._load_devices(force=True)

    def _load_devices(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._devices_at < DEVICES_EVERY_S:
            return
        self._devices_at = now
        devices = {
            str(d): (r, k)
            for d, r, k in self._conn.execute("SELECT device_id, room_id, kind FROM devices")
        }
        if devices != self._devices:
            self._devices = devices
            self._prefixes.clear()

    def _count_backlog(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._backlog_at < LAG_EVERY_S:
            return
        self._backlog_at = now
        count, oldest = self._conn.execute(
            f"SELECT count(*), min(ts) FROM outbox WHERE seq > ? AND kind IN ({_KINDS})",  # noqa: S608
            (self.cursor,),
        ).fetchone()
        self.backlog = (int(count), None if oldest is None else int(oldest))


class InfluxSink:
    """The running sink: its connection, its InfluxDB client and its task."""

    def __init__(self, config: EdgeConfig) -> None:
        influx = config.influx
        self.config = influx
        self.core = SinkCore(
            batch_size=influx.batch_size,
            flush_interval_s=influx.flush_interval_s,
            retry_min_s=influx.retry_min_s,
            retry_max_s=influx.retry_max_s,
        )
        conn = connect(config.database_path, Synchronous.NORMAL, cache_kib=CACHE_KIB)
        self.source = OutboxSource(conn, hotel_id=config.hotel_id, org=influx.organisation)
        self._client = influx_client.client(influx)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, config: EdgeConfig) -> AsyncIterator[InfluxSink | None]:
        """Run the sink while the block runs, if `[influx]` is on; stop it on the way out."""
        if not config.influx.enabled:
            # Retention keeps what an enabled sink has not written: off means off.
            await asyncio.to_thread(_switch_off, config)
            yield None
            return
        sink = cls(config)
        try:
            await asyncio.to_thread(sink.source.open)
            writer = ClientWriter(influx_client.write_call(sink._client, config.influx))
            task = asyncio.create_task(
                run_sink(sink.core, sink.source, writer, read_ahead=READ_AHEAD), name="influx"
            )
            reporter = asyncio.create_task(sink._report(), name="influx-lag")
            log.info(
                "InfluxDB sink to %s (bucket %s) from outbox seq %d",
                config.influx.url,
                config.influx.bucket,
                sink.source.cursor,
            )
            try:
                yield sink
            finally:
                for t in (task, reporter):
                    t.cancel()
                # Bounded: a write in its thread ends within the client's own timeout.
                await asyncio.wait([task, reporter], timeout=STOP_TIMEOUT_S)
        finally:
            await asyncio.to_thread(sink._close)

    def lag(self) -> InfluxLag:
        count, oldest = self.source.backlog
        status = self.core.status
        behind = 0.0 if oldest is None or count == 0 else max(0.0, time.time() - oldest / 1000)
        return InfluxLag(count, behind, status.written, self.source.lost, status.failures)

    async def _report(self) -> None:
        """Log the lag while the sink is behind or failing; quiet when it keeps up."""
        while True:
            await asyncio.sleep(LOG_LAG_EVERY_S)
            lag = self.lag()
            if lag.failures or lag.seconds_behind > LOG_LAG_EVERY_S:
                log.warning(
                    "InfluxDB sink behind by %d points (%.0f s); %d written, %d lost;"
                    " last error: %s",
                    lag.points_behind,
                    lag.seconds_behind,
                    lag.written,
                    lag.lost,
                    self.core.status.last_error,
                )

    def _close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
        self.source.close()


def _switch_off(config: EdgeConfig) -> None:
    """Mark the sink off in the store (turned on again, it starts from what comes next)."""
    if not config.database_path.exists():
        return
    conn = connect(config.database_path, Synchronous.NORMAL, cache_kib=CACHE_KIB)
    try:
        row = conn.execute("SELECT enabled FROM influx_sink WHERE id = 1").fetchone()
        if row and row[0]:
            with transaction(conn):
                conn.execute("UPDATE influx_sink SET enabled = 0 WHERE id = 1")
                conn.execute("DELETE FROM influx_lines")  # off: nothing kept for it
    except sqlite3.OperationalError:
        log.debug("no InfluxDB sink state to switch off", exc_info=True)
    finally:
        conn.close()
