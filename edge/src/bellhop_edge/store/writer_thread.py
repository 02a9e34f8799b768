"""The body of the store writer's thread: gather a batch, commit it, report.

Internal to `writer`: `StoreWriter` hands items over a queue (chunks of ops,
`Call`s, a final `Stop`) and gets a `Done` back on its event loop for each
batch. Between batches the thread compacts staged telemetry and runs WAL
checkpoints. A batch that fails is retried op by op, each in a savepoint, so
one bad op (or a full disk) fails alone and the rest commit.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bellhop_edge.clock import now_ms
from bellhop_edge.core.ops import WriteOp
from bellhop_edge.errors import StoreError
from bellhop_edge.store import history
from bellhop_edge.store.apply import Applier
from bellhop_edge.store.schema import transaction

__all__ = [
    "COMPACT_RETRY_S",
    "OP_ERRORS",
    "Call",
    "Done",
    "Item",
    "Stop",
    "ThreadSettings",
    "WriterStats",
    "WriterThread",
]

log = logging.getLogger(__name__)

# After a failed compaction (a full disk), the next try waits this long at most.
COMPACT_RETRY_S: Final = 60.0
# What a bad op (or a failing disk) raises while a batch is applied.
OP_ERRORS: Final = (sqlite3.Error, ValueError, TypeError, KeyError, StoreError)


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
class ThreadSettings:
    max_batch: int
    max_delay_s: float
    checkpoint_interval_s: float
    compact_rows: int
    compact_interval_s: float
    # Replay receipts kept (core/replay.py); older ones are deleted between batches.
    receipts_kept: int = 10_000


@dataclass(frozen=True, slots=True)
class Call:
    """Run `fn` in its own transaction on the writer thread (retention steps)."""

    fn: Callable[[sqlite3.Connection], Any]


class Stop:
    """Commit what was queued before, checkpoint, end the thread."""


# Ops travel to the thread in chunks: one queue hand-over per chunk, not per op.
Item = list[WriteOp] | Call | Stop


@dataclass(frozen=True, slots=True)
class Done:
    """Thread -> loop: items up to `through` are finished."""

    through: int
    committed: int
    failures: Mapping[int, BaseException] = field(default_factory=dict)
    results: Mapping[int, Any] = field(default_factory=dict)
    rejected_points: int = 0
    batch_size: int = 0


class WriterThread:
    """The body of the writer thread: gather a batch, commit it, report."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        items: queue.SimpleQueue[Item],
        settings: ThreadSettings,
        report: Callable[[Done], None],
        stats: WriterStats,
    ) -> None:
        self._conn = conn
        self._items = items
        self._settings = settings
        self._report = report
        self._stats = stats
        self._applier = Applier(conn)
        self._count = 0  # items taken off the queue, = the last ticket seen
        self._last_checkpoint = self._last_compact = time.monotonic()
        self._dirty = False
        self._staged = history.staged_rows(conn)
        self._compacting = False
        self._compact_retry_at = 0.0

    def run(self) -> None:
        s = self._settings
        q = self._items
        held: Item | None = None
        while True:
            if held is not None:
                item, held = held, None
            else:
                try:
                    item = q.get(timeout=s.checkpoint_interval_s)
                except queue.Empty:
                    self._housekeeping()
                    continue
            if isinstance(item, Stop):
                return
            if isinstance(item, Call):
                self._count += 1
                self._call(item)
                continue
            batch: list[WriteOp] = list(item)
            deadline = time.monotonic() + s.max_delay_s
            while len(batch) < s.max_batch:
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
                if isinstance(nxt, Stop | Call):
                    held = nxt
                    break
                batch.extend(nxt)
            # A chunk may carry the batch past max_batch: commit in slices.
            for start in range(0, len(batch), s.max_batch):
                self._commit(batch[start : start + s.max_batch])
            self._housekeeping()

    def _commit(self, batch: list[WriteOp]) -> None:
        first = self._count + 1
        self._count += len(batch)
        rejected_before = self._applier.rejected_points
        failures: dict[int, BaseException] = {}
        now = now_ms()
        try:
            with transaction(self._conn):
                self._applier.apply_batch(batch, now)
        except OP_ERRORS as exc:
            log.debug("batch failed (%s); retrying op by op", exc)
            self._applier.rejected_points = rejected_before  # rolled back: counted again
            failures = self._commit_one_by_one(batch, first, now)
        if failures:
            self._applier.series.forget()
            self._applier.influx.forget()
            log.error(
                "%d of %d store writes failed; first error: %s",
                len(failures),
                len(batch),
                next(iter(failures.values())),
            )
        self._dirty = True
        self._report(
            Done(
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
        self._applier.influx.forget()
        failures: dict[int, BaseException] = {}
        conn = self._conn
        try:
            with transaction(conn):
                for ticket, op in enumerate(batch, start=first):
                    conn.execute("SAVEPOINT op")
                    try:
                        self._applier.apply_one(op, now)
                    except OP_ERRORS as exc:
                        conn.execute("ROLLBACK TO op")
                        failures[ticket] = exc
                    conn.execute("RELEASE op")
        except sqlite3.Error as exc:
            return dict.fromkeys(range(first, first + len(batch)), exc)
        return failures

    def _call(self, call: Call) -> None:
        ticket = self._count
        try:
            result = call.fn(self._conn)
        except Exception as exc:
            self._report(Done(through=ticket, committed=0, failures={ticket: exc}))
            return
        self._dirty = True
        self._report(Done(through=ticket, committed=1, results={ticket: result}))

    def _housekeeping(self) -> None:
        self._maybe_compact()
        self._maybe_checkpoint()

    def _prune_receipts(self) -> None:
        """Keep the newest `receipts_kept` receipts; run at checkpoints, in its own transaction."""
        try:
            with transaction(self._conn):
                self._conn.execute(
                    "DELETE FROM receipts WHERE id <= (SELECT max(id) FROM receipts) - ?",
                    (self._settings.receipts_kept,),
                )
        except sqlite3.Error as exc:
            log.warning("pruning replay receipts failed: %s", exc)

    def _maybe_compact(self) -> None:
        """Move staged telemetry into its index, one chunk between two batches."""
        s = self._settings
        self._staged += self._applier.staged_points
        self._applier.staged_points = 0
        now = time.monotonic()
        if not self._compacting:
            if now < self._compact_retry_at:
                return
            due = self._staged > 0 and now - self._last_compact >= s.compact_interval_s
            self._compacting = due or self._staged >= s.compact_rows
        if not self._compacting:
            return
        chunk = max(1, s.compact_rows // 4)
        try:
            with transaction(self._conn):
                moved = history.compact(self._conn, chunk)
        except sqlite3.Error as exc:
            # A full disk: try again in a while, not after every batch.
            log.warning("telemetry compaction failed: %s", exc)
            self._compacting = False
            self._compact_retry_at = now + min(COMPACT_RETRY_S, s.compact_interval_s)
            return
        self._dirty = True
        self._staged = max(0, self._staged - moved)
        self._stats.compacted += moved  # an int bump; read on the loop for health only
        if moved < chunk:
            self._compacting = False
            self._staged = 0
            self._last_compact = now

    def _maybe_checkpoint(self) -> None:
        # Under NORMAL the WAL is synced at checkpoints: a periodic one bounds
        # what a power cut can take to about `checkpoint_interval_s`.
        s, now = self._settings, time.monotonic()
        if self._dirty and now - self._last_checkpoint >= s.checkpoint_interval_s:
            self._last_checkpoint = now
            self._dirty = False
            self._prune_receipts()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)
