"""Telemetry history in SQLite: raw points, bucketed rollups and their queries.

Each (device, metric) pair is a *series* with a small integer id, so a raw
point is three numbers `(series_id, ts, value)` in a `WITHOUT ROWID` table
keyed by `(series_id, ts)`. Integer keys make inserts about three times faster
and the table far smaller than text keys (measured; see docs/edge-store.md).

New points are appended to `telemetry_recent`, a plain rowid table, and
moved into `telemetry` in large sorted chunks by `compact`. Inserting straight
into the `(series_id, ts)` tree touches one page per series in every commit
(with a hotel's 6,000 series, one 4 KiB page written per 20-byte point) and
fell to 42,000 rows/s at a million rows; appending and compacting kept
200,000-450,000 rows/s (measured; docs/edge-store.md). Queries read both.

Hot-path inserts go through `json_each(?)`: a whole run of points is one
statement and one `sqlite3_step`, so a writer thread gives the GIL away once
per run instead of once per row (per-row `executemany` stalls on the GIL when
the event loop is busy). Everything here takes a connection and does no
transaction control: the caller owns the transaction.
"""

from __future__ import annotations

import sqlite3

import orjson

from bellhop_edge.core.model import TelemetryPoint

__all__ = [
    "HISTORY_DDL",
    "OUTBOX_TELEMETRY_KIND",
    "RECENT_DDL",
    "SeriesIndex",
    "compact",
    "delete_old_rollups",
    "insert_points",
    "query_points",
    "roll_up",
    "staged_rows",
]

# The OutboxEvent oneof field number of `telemetry`; the outbox stores kinds by field number.
OUTBOX_TELEMETRY_KIND = 3

HISTORY_DDL = (
    """
    CREATE TABLE series (
        series_id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        metric TEXT NOT NULL,
        UNIQUE (device_id, metric)
    ) STRICT
    """,
    """
    CREATE TABLE telemetry (
        series_id INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (series_id, ts)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TABLE telemetry_rollup (
        series_id INTEGER NOT NULL,
        bucket_start INTEGER NOT NULL,
        min REAL NOT NULL,
        max REAL NOT NULL,
        sum REAL NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (series_id, bucket_start)
    ) STRICT, WITHOUT ROWID
    """,
)

# Schema version 2: the append-only staging table in front of `telemetry`.
RECENT_DDL = """
CREATE TABLE telemetry_recent (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL
) STRICT
"""

_INSERT_RAW = """
INSERT INTO telemetry_recent (series_id, ts, value)
SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) ORDER BY key
"""

# Sorted, so that each series' tail page is written once per chunk; a point
# repeated with the same ts (a redelivery) keeps its latest value.
_COMPACT = """
INSERT OR REPLACE INTO telemetry (series_id, ts, value)
SELECT series_id, ts, value FROM telemetry_recent WHERE id <= ?1 ORDER BY series_id, ts, id
"""

# One outbox row per point, in submission order, in the same transaction,
# copied from the rows just staged: reading them back costs a fifth of
# parsing the JSON again (0.18 against 1.1 us a point, measured).
_INSERT_OUTBOX = f"""
INSERT INTO outbox (ts, kind, series_id, point_ts, value)
SELECT ?3, {OUTBOX_TELEMETRY_KIND}, series_id, ts, value
FROM telemetry_recent WHERE id > ?1 AND id <= ?2 ORDER BY id
"""  # noqa: S608 - constant

# Rows that arrive late for a bucket that was already rolled up merge into it.
_ROLL_UP = """
INSERT INTO telemetry_rollup (series_id, bucket_start, min, max, sum, count)
SELECT series_id, (ts / ?4) * ?4, min(value), max(value), sum(value), count(*)
FROM telemetry
WHERE series_id BETWEEN ?1 AND ?2 AND ts < ?3
GROUP BY series_id, ts / ?4
ON CONFLICT (series_id, bucket_start) DO UPDATE SET
    min = min(min, excluded.min),
    max = max(max, excluded.max),
    sum = sum + excluded.sum,
    count = count + excluded.count
"""


class SeriesIndex:
    """Maps (device_id, metric) to series ids, creating them on first use.

    One per connection that writes. Ids never change once committed, so the
    cache only has to be dropped after a rollback.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._ids: dict[tuple[str, str], int] = {}

    def id_for(self, device_id: str, metric: str) -> int:
        key = (device_id, metric)
        series_id = self._ids.get(key)
        if series_id is None:
            row = self._conn.execute(
                "INSERT INTO series (device_id, metric) VALUES (?, ?)"
                " ON CONFLICT (device_id, metric) DO UPDATE SET metric = metric"
                " RETURNING series_id",
                key,
            ).fetchone()
            series_id = int(row[0])
            self._ids[key] = series_id
        return series_id

    def forget(self) -> None:
        """Drop the cache after a rollback that may have undone new series."""
        self._ids.clear()


def insert_points(
    conn: sqlite3.Connection, rows: list[tuple[int, int, float]], *, outbox_ts: int
) -> tuple[int, int]:
    """Insert raw points and their outbox rows: two statements whatever the count.

    Returns the outbox seqs the points took, first and last (consecutive: one
    statement); (0, -1) for no points.
    """
    if not rows:
        return 0, -1
    # orjson spends an eighth of `json`'s time here, under the GIL; SQLite
    # (3.40) reads JSON from text only, not from a blob.
    payload = orjson.dumps(rows).decode()
    cursor = conn.execute(_INSERT_RAW, (payload,))
    # One statement appends consecutive rowids, ending at lastrowid.
    last = int(cursor.lastrowid or 0)
    cursor = conn.execute(_INSERT_OUTBOX, (last - cursor.rowcount, last, outbox_ts))
    last_seq = int(cursor.lastrowid or 0)
    return last_seq - cursor.rowcount + 1, last_seq


# Both raw tables; a staged point shadows a compacted one with the same ts
# (max(newer) makes SQLite take the bare `value` from that row).
_QUERY_RAW = """
SELECT ts, value, max(newer) FROM (
    SELECT ts, value, 0 AS newer FROM telemetry
    WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3
    UNION ALL
    SELECT ts, value, id FROM telemetry_recent
    WHERE series_id = ?1 AND ts >= ?2 AND ts < ?3
)
GROUP BY ts ORDER BY ts LIMIT ?4
"""


def compact(conn: sqlite3.Connection, max_rows: int) -> int:
    """Move the oldest `max_rows` staged points into `telemetry`; returns how many."""
    first = conn.execute("SELECT min(id) FROM telemetry_recent").fetchone()[0]
    if first is None:
        return 0
    last = int(first) + max_rows - 1
    conn.execute(_COMPACT, (last,))
    return conn.execute("DELETE FROM telemetry_recent WHERE id <= ?", (last,)).rowcount


def staged_rows(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM telemetry_recent").fetchone()[0])


def roll_up(
    conn: sqlite3.Connection,
    first_series: int,
    last_series: int,
    *,
    raw_cutoff_ms: int,
    bucket_ms: int,
) -> int:
    """Fold raw points older than `raw_cutoff_ms` of a series range into rollups.

    `raw_cutoff_ms` must be bucket-aligned so that only whole buckets are
    folded. Returns the number of raw rows folded and deleted.
    """
    args = (first_series, last_series, raw_cutoff_ms)
    conn.execute(_ROLL_UP, (*args, bucket_ms))
    cursor = conn.execute(
        "DELETE FROM telemetry WHERE series_id BETWEEN ?1 AND ?2 AND ts < ?3", args
    )
    return cursor.rowcount


def delete_old_rollups(
    conn: sqlite3.Connection, first_series: int, last_series: int, *, cutoff_ms: int
) -> int:
    cursor = conn.execute(
        "DELETE FROM telemetry_rollup WHERE series_id BETWEEN ?1 AND ?2 AND bucket_start < ?3",
        (first_series, last_series, cutoff_ms),
    )
    return cursor.rowcount


def query_points(
    conn: sqlite3.Connection,
    device_id: str,
    metric: str,
    *,
    start_ms: int,
    end_ms: int,
    limit: int,
) -> list[TelemetryPoint]:
    """Points in `[start_ms, end_ms)`, oldest first, at most `limit`.

    Raw points where they still exist (compacted or still staged); before
    the oldest raw point of the series, one point per rollup bucket at the
    bucket's start with the bucket's average.
    """
    row = conn.execute(
        "SELECT series_id FROM series WHERE device_id = ? AND metric = ?", (device_id, metric)
    ).fetchone()
    if row is None or limit <= 0 or end_ms <= start_ms:
        return []
    series_id = int(row[0])
    oldest = conn.execute(
        "SELECT min(ts) FROM (SELECT min(ts) AS ts FROM telemetry WHERE series_id = ?1"
        " UNION ALL SELECT min(ts) FROM telemetry_recent WHERE series_id = ?1)",
        (series_id,),
    ).fetchone()[0]
    rollup_end = end_ms if oldest is None else min(end_ms, int(oldest))
    points = [
        TelemetryPoint(device_id, metric, int(ts), float(avg))
        for ts, avg in conn.execute(
            "SELECT bucket_start, sum / count FROM telemetry_rollup"
            " WHERE series_id = ? AND bucket_start >= ? AND bucket_start < ?"
            " ORDER BY bucket_start LIMIT ?",
            (series_id, start_ms, rollup_end, limit),
        )
    ]
    remaining = limit - len(points)
    if remaining > 0 and oldest is not None:
        points.extend(
            TelemetryPoint(device_id, metric, int(ts), float(value))
            for ts, value, _ in conn.execute(_QUERY_RAW, (series_id, start_ms, end_ms, remaining))
        )
    return points
