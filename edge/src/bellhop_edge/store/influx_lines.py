"""Line protocol kept with applied telemetry while the InfluxDB sink is on (docs/influx.md).

Each run of points the writer inserts in one statement (consecutive outbox
seqs, `first_seq`..`last_seq`) gets one `influx_lines` row holding its points
as InfluxDB line protocol, made in the same transaction. The sink then reads
a few rows of text per batch instead of one row per point and formats
nothing (docs/benchmarks.md, P10). Nothing is stored while the sink is off,
nor past `MAX_BACKLOG` points behind its cursor (the disk it may take is
bounded); the sink reads points without stored lines from the outbox as
before. A row goes with its points: the sink deletes it once it has written
them, and the schema's trigger when retention deletes one of its outbox rows
first (the point is then counted lost, and never written from this row).
"""

from __future__ import annotations

import sqlite3
from typing import Final

from bellhop_bridge.influx_core import MEASUREMENT_TELEMETRY, Entry, escape, series_key

__all__ = ["MAX_BACKLOG", "SCHEMA_V9", "InfluxLines", "at_most", "runs_after", "telemetry_prefix"]

# Points behind the sink's cursor past which no more lines are stored: about 117 bytes a
# point, so at most about 60 MB of text on top of the outbox during a long outage.
MAX_BACKLOG: Final = 500_000

SCHEMA_V9: Final = (
    "CREATE TABLE influx_lines (last_seq INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL,"
    " lines TEXT NOT NULL) STRICT",
    # The tags every point carries besides the device's: set by the sink when it opens.
    "ALTER TABLE influx_sink ADD COLUMN org TEXT",
    "ALTER TABLE influx_sink ADD COLUMN hotel TEXT",
    # The records between stored runs, found without stepping over the points.
    "CREATE INDEX outbox_records ON outbox (seq) WHERE kind != 3",
    # A point deleted before the sink wrote it (retention) takes its run's stored lines
    # with it: the rest of the run is then read from the outbox, the point counted lost.
    """
    CREATE TRIGGER influx_lines_gone AFTER DELETE ON outbox
    WHEN old.kind = 3
        AND old.seq > (SELECT cursor FROM influx_sink WHERE id = 1 AND enabled)
    BEGIN
        DELETE FROM influx_lines
        WHERE last_seq = (SELECT min(last_seq) FROM influx_lines WHERE last_seq >= old.seq)
            AND first_seq <= old.seq;
    END
    """,
)

# The registry's version too: `bellhop devices` changes rooms and kinds on a connection of
# its own and bumps it, so a change means the prefixes (rooms, kinds) are made again.
_SINK: Final = (
    "SELECT org, hotel, cursor, (SELECT version FROM registry_state)"
    " FROM influx_sink WHERE id = 1 AND enabled"
)
_SERIES: Final = """
SELECT s.series_id, s.device_id, s.metric, d.room_id, d.kind
FROM series AS s LEFT JOIN devices AS d ON d.device_id = s.device_id
"""
_INSERT: Final = "INSERT INTO influx_lines (last_seq, first_seq, lines) VALUES (?, ?, ?)"
_RUNS: Final = (
    "SELECT first_seq, last_seq, lines FROM influx_lines WHERE last_seq > ? ORDER BY last_seq"
)


def runs_after(conn: sqlite3.Connection, start: int, want: int) -> list[tuple[int, int, str]]:
    """The stored runs after seq `start`, (first, last, lines), until they hold `want`
    points or more. A run the cursor stopped inside (a batch ended in it) comes as its
    tail: one line a seq, so its first `start - first + 1` lines are dropped."""
    runs: list[tuple[int, int, str]] = []
    got = 0
    cursor = conn.execute(_RUNS, (start,))
    try:
        while got < want and (row := cursor.fetchone()) is not None:
            first, last, text = row
            if first <= start:
                first, text = start + 1, text.split("\n", start - first + 1)[-1]
            runs.append((first, last, text))
            got += last - first + 1
    finally:
        cursor.close()
    return runs


def at_most(entries: list[Entry], limit: int) -> list[Entry]:
    """The first `limit` records of `entries` (limit >= 1): a run that does not fit
    whole is cut to its first lines, its key the last seq kept, so that no request
    holds more than the sink's `batch_size` points and the cursor may stop inside a
    run (the next read takes its tail: `runs_after`)."""
    kept: list[Entry] = []
    room = limit
    for entry in entries:
        if entry.count > room:
            if room and entry.line:
                head = "\n".join(entry.line.split("\n", room)[:room])
                kept.append(Entry(entry.key - entry.count + room, head, entry.applied_ms, room))
            break
        kept.append(entry)
        room -= entry.count
    return kept


def telemetry_prefix(
    org: str | None,
    hotel: str | None,
    device_id: str,
    *,
    room: str | None,
    kind: str | None,
    metric: str,
) -> str:
    """A point's line up to its value: "telemetry,<tags> <metric>=" (tags escaped once)."""
    tags = {"org": org, "hotel": hotel, "room": room, "device": device_id, "kind": kind}
    return f"{series_key(MEASUREMENT_TELEMETRY, tags)} {escape(metric)}="


class InfluxLines:
    """Stores a run's lines on the writer's connection; the caller owns the transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._tags: tuple[str | None, str | None] | None = None
        self._version: int | None = None
        self._prefixes: dict[int, str] = {}

    def forget(self) -> None:
        """A device's room or kind changed (or a rollback): prefixes are made again."""
        self._prefixes.clear()

    def store(self, rows: list[tuple[int, int, float]], first_seq: int, last_seq: int) -> None:
        """The run `rows` (series_id, ts, value) just took outbox seqs first..last."""
        sink = self._conn.execute(_SINK).fetchone()
        if sink is None or sink[1] is None or last_seq - int(sink[2]) > MAX_BACKLOG:
            return
        if len(rows) != last_seq - first_seq + 1:
            return  # not one point per seq: the sink reads these from the outbox
        tags = (sink[0], sink[1])
        if tags != self._tags or sink[3] != self._version:
            self._tags, self._version = tags, sink[3]
            self._prefixes.clear()
        prefixes = self._prefixes
        try:
            # Values are finite (the applier rejects the others); repr round-trips.
            text = "\n".join([f"{prefixes[sid]}{value!r} {ts}" for sid, ts, value in rows])
        except KeyError:  # a series not seen yet
            prefixes = self._load()
            text = "\n".join([f"{prefixes[sid]}{value!r} {ts}" for sid, ts, value in rows])
        self._conn.execute(_INSERT, (last_seq, first_seq, text))

    def _load(self) -> dict[int, str]:
        assert self._tags is not None
        org, hotel = self._tags
        self._prefixes = {
            int(sid): telemetry_prefix(org, hotel, device, room=room, kind=kind, metric=metric)
            for sid, device, metric, room, kind in self._conn.execute(_SERIES)
        }
        return self._prefixes
