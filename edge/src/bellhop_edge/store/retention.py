"""Retention: how long each kind of record is kept, in small resumable steps.

    run = RetentionRun(config.retention, now_ms)
    while not run.done:
        report += run.step(conn)       # one bounded transaction

Raw telemetry is folded into bucketed rollups after `raw_retention_s`; old
rollups, events, cleared alerts, finished commands and acknowledged outbox
rows are deleted (but those the InfluxDB sink has not written yet, within
bounds: see `_SINK_HOLDS`); unacknowledged outbox rows older than
`outbox_max_age_s` are dropped (the bridge sees the gap). Each step does at most one chunk of
work, so the writer thread, which runs the steps between batches, is never
held for long (docs/edge-store.md, "Retention").
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import astuple, dataclass
from enum import IntEnum
from typing import Final

from bellhop_edge.config import RetentionConfig
from bellhop_edge.store import history, outbox
from bellhop_edge.store.schema import transaction

__all__ = ["RetentionReport", "RetentionRun"]

log = logging.getLogger(__name__)


def _ms(seconds: float) -> int:
    """Whole milliseconds: bucket arithmetic in SQL must stay integer."""
    return round(seconds * 1000)


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
    outbox_thinned: int = 0
    transactions: int = 0
    # Steps that failed (a full disk fails those that need new pages) and were skipped.
    failed_steps: int = 0

    def __add__(self, other: RetentionReport) -> RetentionReport:
        return RetentionReport(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


class _Phase(IntEnum):
    COMPACT = 0
    TELEMETRY = 1
    EVENTS = 2
    ALERTS = 3
    COMMANDS = 4
    OUTBOX_ACKED = 5
    OUTBOX_OLD = 6
    OUTBOX_CAP = 7
    DONE = 8


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
        "((lane = 1 AND seq <= (SELECT last_acked_seq FROM outbox_state))"
        " OR (lane = 2 AND seq <= (SELECT last_acked_priority_seq FROM outbox_state)))"
        " AND NOT (:sink_holds)",
        "outbox_acked_deleted",
    ),
}
# An acknowledged row the InfluxDB sink (docs/influx.md) has not written yet stays while
# the sink is on, so that an InfluxDB outage longer than a retention interval loses
# nothing; but no longer than an unacknowledged row would (`outbox_max_age_s`) and
# within the outbox's cap (`outbox_max_events`, counted in seqs from the newest, which
# keeps at most that many), so that a dead InfluxDB cannot fill the disk. Past either
# bound it goes and counts as lost (the schema's trigger for points and device events,
# `_count_sink_lost` for alert and device records).
_SINK_HOLDS: Final = (
    "seq > coalesce((SELECT cursor FROM influx_sink WHERE id = 1 AND enabled), 1e18)"
    " AND ts >= :sink_oldest AND seq > :sink_lowest"
)
_SINK_RECORDS: Final = "kind IN (6, 8)"  # written by the sink; the trigger counts 3 and 5


@dataclass(slots=True)
class RetentionRun:
    """Resumable retention: each `step` is one bounded transaction."""

    policy: RetentionConfig
    now: int
    phase: _Phase = _Phase.COMPACT
    after_series: int = 0
    thin_left: int | None = None  # outbox events still to thin in this run

    @property
    def done(self) -> bool:
        return self.phase is _Phase.DONE

    def skip(self) -> None:
        """Give up the current phase (its step failed) and go on with the next."""
        self.phase = _Phase(self.phase + 1)

    def step(self, conn: sqlite3.Connection) -> RetentionReport:
        with transaction(conn):
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
        if phase is _Phase.OUTBOX_OLD:
            return self._outbox_old(conn)
        if phase is _Phase.OUTBOX_CAP:
            return self._outbox_cap(conn)
        table, key, where, counter = _PRUNES[phase]
        sql = (
            f"DELETE FROM {table} WHERE {key} IN"  # noqa: S608 - constants
            f" (SELECT {key} FROM {table} WHERE {where} LIMIT :limit)"
        )
        args: dict[str, object] = {
            "old": self.now - _ms(p.events_retention_s),
            "now": self.now,
            "limit": p.rows_per_chunk,
        }
        if phase is _Phase.OUTBOX_ACKED:
            sql = sql.replace(":sink_holds", _SINK_HOLDS)
            args |= self._sink_bounds(conn)
            _count_sink_lost(conn, sql.partition(" IN ")[2], args)
        n = conn.execute(sql, args).rowcount
        if n < p.rows_per_chunk:
            self.phase = _Phase(phase + 1)
        return RetentionReport(**{counter: n})

    def _sink_bounds(self, conn: sqlite3.Connection) -> dict[str, object]:
        p = self.policy
        oldest = 0 if p.outbox_max_age_s is None else self.now - _ms(p.outbox_max_age_s)
        lowest = 0
        if p.outbox_max_events is not None:
            lowest = outbox.last_seq(conn) - p.outbox_max_events
        return {"sink_oldest": oldest, "sink_lowest": lowest}

    def _outbox_old(self, conn: sqlite3.Connection) -> RetentionReport:
        """Unacknowledged events older than the limit go, and a gap record says so."""
        p = self.policy
        if p.outbox_max_age_s is None:
            self.phase = _Phase.OUTBOX_CAP
            return RetentionReport()
        old = {"old": self.now - _ms(p.outbox_max_age_s)}
        n = outbox.drop(
            conn, "ts < :old", old, p.rows_per_chunk, reason="outbox_too_old", now=self.now
        )
        if n < p.rows_per_chunk:
            self.phase = _Phase.OUTBOX_CAP
        if n:
            log.warning("dropped %d unacked outbox events older than the outbox limit", n)
        return RetentionReport(outbox_unacked_dropped=n)

    def _outbox_cap(self, conn: sqlite3.Connection) -> RetentionReport:
        """Past the cap, the oldest raw telemetry is thinned; nothing else ever is.

        The excess is measured once per run (each chunk's gap record is an
        event too), then thinned a chunk per step.
        """
        cap = self.policy.outbox_max_events
        if self.thin_left is None:
            self.thin_left = 0 if cap is None else max(0, outbox.backlog(conn).total - cap)
        if self.thin_left <= 0:
            self.phase = _Phase.DONE
            return RetentionReport()
        limit = min(self.thin_left, self.policy.rows_per_chunk)
        n = outbox.drop(conn, "kind = 3", {}, limit, reason="outbox_full", now=self.now)
        self.thin_left -= limit
        if n < limit:
            self.phase = _Phase.DONE  # nothing thinnable is left
        log.warning("outbox over its cap: thinned %d raw telemetry points", n)
        return RetentionReport(outbox_thinned=n)


def _count_sink_lost(conn: sqlite3.Connection, picked: str, args: dict[str, object]) -> None:
    """Alert and device records about to go before the InfluxDB sink wrote them: lost."""
    sql = (
        f"UPDATE influx_sink SET lost = lost + (SELECT count(*) FROM outbox WHERE seq IN {picked}"  # noqa: S608 - constants
        f" AND {_SINK_RECORDS} AND seq > cursor) WHERE id = 1 AND enabled"
    )
    conn.execute(sql, args)
