"""The single batching writer: one thread, one connection, many ops per commit.

    async with StoreWriter(path) as writer:
        writer.add_listener(on_report)      # (through, failed tickets) after each batch
        writer.submit(PutTelemetry(points))  # ticket writer.last_ticket
        await writer.flush()

Ops are numbered (tickets) in submission order and committed in that order.
Listeners hear, after every batch, which tickets are done and which of them
failed: what `core.delivery` needs to acknowledge a QoS 1 message only once
its writes are committed. Durability, batching and back-pressure are
described in docs/edge-store.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from bellhop_edge.config import RetentionConfig
from bellhop_edge.core.ops import WriteOp
from bellhop_edge.errors import WriteFailedError, WriterClosedError, WriterFullError
from bellhop_edge.store.retention import RetentionReport, RetentionRun
from bellhop_edge.store.schema import Synchronous, connect, limit_size, migrate
from bellhop_edge.store.writer_thread import (
    Call,
    Done,
    Item,
    Stop,
    ThreadSettings,
    WriterStats,
    WriterThread,
)

__all__ = ["StoreWriter", "WriterReport", "WriterStats"]

T = TypeVar("T")
log = logging.getLogger(__name__)

_STOP: Final = Stop()
# Ops are handed to the thread in chunks of this many (or after `hand_over_ms`).
_CHUNK_OPS: Final = 256


@dataclass(frozen=True, slots=True)
class WriterReport:
    """Every ticket up to `through` is done; `failed` (ascending) were not committed.

    `died`: the writer stopped for good; nothing after `through` ever will be.
    """

    through: int
    failed: Sequence[int] = ()
    died: bool = False


Listener = Callable[[WriterReport], None]


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
        receipts_kept: int = 10_000,
    ) -> None:
        if max_batch < 1 or max_pending < 1 or max_delay_ms < 0:
            raise ValueError("max_batch and max_pending must be positive, max_delay_ms >= 0")
        self.path = path
        self.stats = WriterStats()
        self._synchronous = synchronous
        self._settings = ThreadSettings(
            max_batch=max_batch,
            max_delay_s=max_delay_ms / 1000,
            checkpoint_interval_s=checkpoint_interval_s,
            compact_rows=compact_rows,
            compact_interval_s=compact_interval_s,
            receipts_kept=receipts_kept,
        )
        self._max_pending = max_pending
        self._cache_kib = cache_kib
        self._max_size_bytes = max_size_bytes
        self._queue: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._submitted = 0  # tickets handed out; ticket n is the n-th item
        self._finished = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[Any] | Callable[[], None]]]
        self._waiters = collections.deque()
        self._listeners: list[Listener] = []
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

    @property
    def max_pending(self) -> int:
        return self._max_pending

    @property
    def last_ticket(self) -> int:
        """The number of the op submitted last (ops are numbered from 1)."""
        return self._submitted

    def submit(self, op: WriteOp) -> None:
        """Queue an op without waiting; raises when closed or past `max_pending`."""
        self._check_open()
        if self.pending >= self._max_pending:
            self.stats.rejected_full += 1
            raise WriterFullError(f"{self.pending} writes waiting for the disk; try again")
        self._enqueue(op)

    async def put(self, op: WriteOp) -> None:
        """Queue an op, waiting while `max_pending` ops are uncommitted."""
        await self.wait_below(self._max_pending - 1)
        self._check_open()
        self._enqueue(op)

    async def wait_below(self, ops: int) -> None:
        """Wait until at most `ops` ops are uncommitted (a low watermark)."""
        while self.pending > ops:
            self._check_open()
            self._space.clear()
            await self._space.wait()

    async def submit_and_wait(self, op: WriteOp) -> None:
        """Queue an op and return once it is committed; raises `WriteFailedError` if not."""
        await self.put(op)
        await self._wait(self._submitted)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer thread in a transaction of its own, after what is queued."""
        self._check_open()
        self._enqueue(Call(fn))
        result: T = await self._wait(self._submitted)
        return result

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop once every op submitted so far is done.

        Ops that failed are counted and logged; the callback still runs, so use
        `submit_and_wait` (or a listener) when one op's outcome matters.
        """
        self._check_open()
        if self._submitted == self._finished:
            callback()
        else:
            self._waiters.append((self._submitted, callback))

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` on the loop with a `WriterReport` after every batch."""
        self._listeners.append(listener)

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed (or reported failed)."""
        if self._fatal is not None:
            raise WriterClosedError("the store writer died") from self._fatal
        if self._submitted > self._finished:
            with contextlib.suppress(WriteFailedError):
                await self._wait(self._submitted)

    async def apply_retention(self, policy: RetentionConfig, now: int) -> RetentionReport:
        """Run retention through the writer, one small transaction at a time.

        Ops submitted meanwhile are committed between the steps, so ingest
        is never held up by more than one step.
        """
        run = RetentionRun(policy, now)
        report = RetentionReport()
        while not run.done:
            self._check_open()
            await self.wait_below(self._max_pending - 1)
            self._enqueue(Call(run.step))
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

    def _enqueue(self, item: WriteOp | Call) -> None:
        self._submitted += 1
        self.stats.submitted += 1
        if isinstance(item, Call):
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
    def _on_done(self, done: Done) -> None:
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
        self._tell(WriterReport(done.through, sorted(done.failures)))
        waiters = self._waiters
        while waiters and waiters[0][0] <= done.through:
            ticket, waiter = waiters.popleft()
            if isinstance(waiter, asyncio.Future):
                if not waiter.done():
                    self._resolve(waiter, ticket, done)
                continue
            try:  # one bad callback must not strand the others
                waiter()
            except Exception:
                log.exception("store writer callback failed")
        if self.pending < self._max_pending:
            self._space.set()

    def _tell(self, report: WriterReport) -> None:
        for listener in self._listeners:
            try:  # one bad listener must not strand the others
                listener(report)
            except Exception:
                log.exception("store writer listener failed")

    @staticmethod
    def _resolve(waiter: asyncio.Future[Any], ticket: int, done: Done) -> None:
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
            self._tell(WriterReport(self._finished, died=True))
            while self._waiters:
                _, waiter = self._waiters.popleft()
                if isinstance(waiter, asyncio.Future) and not waiter.done():
                    failure = WriterClosedError("the store writer died")
                    failure.__cause__ = error
                    waiter.set_exception(failure)
            self._space.set()
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(None)

    def _report(self, done: Done) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
            self._loop.call_soon_threadsafe(self._on_done, done)

    # -- the thread -----------------------------------------------------------------
    def _run(self, ready: asyncio.Future[None]) -> None:
        loop = self._loop
        assert loop is not None
        try:
            conn = connect(self.path, self._synchronous, cache_kib=self._cache_kib)
            migrate(conn)
            if self._max_size_bytes is not None:
                limit_size(conn, self._max_size_bytes)
        except BaseException as exc:
            loop.call_soon_threadsafe(_fail, ready, exc)
            loop.call_soon_threadsafe(self._on_exit, exc)
            return
        loop.call_soon_threadsafe(_succeed, ready)
        error: BaseException | None = None
        try:
            WriterThread(conn, self._queue, self._settings, self._report, self.stats).run()
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
