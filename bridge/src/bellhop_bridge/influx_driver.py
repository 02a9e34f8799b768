"""The InfluxDB sink's asyncio driver: carries out the core's actions against a store and InfluxDB.

    await run_sink(core, source, writer, read_ahead=2)   # until cancelled

Written against two small protocols (`Source`: the store, `Writer`: InfluxDB)
that the gateway and the relay implement; `ClientWriter` is the `Writer` over
influxdb-client's synchronous write API. The bookkeeping is `influx_core`'s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

from bellhop_bridge.influx_core import (
    Action,
    Batch,
    Commit,
    Entry,
    Outcome,
    Read,
    SinkCore,
    Write,
)

__all__ = ["ClientWriter", "Source", "Writer", "classify", "run_sink"]

log = logging.getLogger(__name__)


class Source(Protocol):
    """The store side: what was applied after a position, and moving the position."""

    async def read(self, after: int | None, limit: int) -> Sequence[Entry]: ...

    async def commit(self, batch: Batch) -> None: ...


class Writer(Protocol):
    """InfluxDB's side: one request with these lines; its outcome and any error's text."""

    async def write(self, lines: Iterable[str]) -> tuple[Outcome, str | None]: ...


class ClientWriter:
    """A `Writer` over a blocking write call (influxdb-client's synchronous write API),
    run in a thread so that the event loop never waits on InfluxDB."""

    def __init__(self, write: Callable[[list[str]], object]) -> None:
        self._write = write

    async def write(self, lines: Iterable[str]) -> tuple[Outcome, str | None]:
        try:
            await asyncio.to_thread(self._write, list(lines))
        except Exception as exc:  # network, timeout, or the server's answer
            return classify(exc)
        return Outcome.ACCEPTED, None


def classify(exc: BaseException) -> tuple[Outcome, str | None]:
    """What an error of the write call means; its text never carries the token."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status in _REFUSED:
        return Outcome.REFUSED, f"HTTP {status}: {_short(getattr(exc, 'message', None) or exc)}"
    if isinstance(status, int):
        return Outcome.RETRY, f"HTTP {status}"
    return Outcome.RETRY, type(exc).__name__


# Malformed lines (400), a body too large (413), a type clash with stored points (422):
# the same request would fail for ever. Anything else (401/403/404: credentials or
# bucket being fixed, 429, 5xx) is worth trying again.
_REFUSED: Final = frozenset({400, 413, 422})


def _short(what: object) -> str:
    text = str(what).replace("\n", " ")
    return text if len(text) <= 200 else text[:200] + "..."


async def run_sink(
    core: SinkCore,
    source: Source,
    writer: Writer,
    *,
    wake: asyncio.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    read_ahead: int = 0,
) -> None:
    """Carry out the core's actions until cancelled. `wake` cuts a quiet poll short.

    `read_ahead` > 0: while a batch is being written, the next ones (up to that
    many) are read and formatted, so that reading the store and writing to
    InfluxDB overlap instead of taking turns. They are only handed to the core
    when it asks for exactly that read, after the batch before was committed:
    the position still moves in order, one accepted batch at a time. The source
    must then allow a read while a commit runs.
    """
    ahead = _ReadAhead(source, read_ahead)
    action = core.start(clock())
    try:
        while True:
            try:
                action = await _step(core, source, writer, ahead, action, wake=wake, clock=clock)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store away or busy: the same step later
                log.warning("InfluxDB sink: %s failed: %s", type(action).__name__, exc)
                ahead.clear()
                action = core.failed(clock(), f"{type(exc).__name__}: {exc}")
    finally:
        await ahead.close()


async def _step(
    core: SinkCore,
    source: Source,
    writer: Writer,
    ahead: _ReadAhead,
    action: Action,
    *,
    wake: asyncio.Event | None,
    clock: Callable[[], float],
) -> Action:
    if isinstance(action, Read):
        entries = await ahead.take(action)
        if entries is None:
            entries = await source.read(action.after, action.limit)
        return core.read_done(entries, clock())
    if isinstance(action, Write):
        if action.then is not None:
            ahead.start(action.then)
        outcome, error = await writer.write(action.batch.lines)
        if outcome is Outcome.RETRY:
            log.warning("InfluxDB did not take a batch (%s); trying again", error)
        elif outcome is Outcome.REFUSED:
            log.error(
                "InfluxDB refused a batch of %d points (%s); counted as lost",
                action.batch.size,
                error,
            )
        return core.write_done(outcome, clock(), error)
    if isinstance(action, Commit):
        await source.commit(action.batch)
        lost = action.batch.lost
        if lost:
            log.warning(
                "%d points or events were gone from the store before they reached"
                " InfluxDB (retention, or refused); counted as lost",
                lost,
            )
        return core.committed(clock())
    if action.retrying:
        # InfluxDB or the store is failing: what was read ahead may be stale by the time
        # it is wanted (retention), and holding it costs memory for nothing.
        ahead.clear()
    await _sleep(action.seconds, None if action.retrying else wake)
    return core.woke(clock())


_Ahead = tuple[Read, Sequence[Entry]]


class _ReadAhead:
    """Reads carried out before the core asks for them, in a chain of at most `depth`.

    Each read of the chain starts after the last key of the one before, and
    the chain stops at a short read (the store is drained: what comes later is
    for the core's own poll). Whatever does not match what the core asks is
    dropped, so a read ahead can only save time, never change what is written.
    """

    def __init__(self, source: Source, depth: int) -> None:
        self._source = source
        self._depth = depth
        self._chain: collections.deque[asyncio.Task[_Ahead | None]] = collections.deque()

    def start(self, read: Read) -> None:
        """The core will ask for `read` next: make sure the chain begins with it."""
        if self._depth <= 0 or self._chain:
            return  # off, or already running from the read before (checked in `take`)
        self._extend(read)

    async def take(self, read: Read) -> Sequence[Entry] | None:
        """The entries of `read` if they were read ahead, else None (read them now)."""
        if not self._chain:
            return None
        done = await self._chain.popleft()
        if done is None or done[0] != read:
            self.clear()
            return None
        self._extend()
        return done[1]

    def clear(self) -> None:
        for task in self._chain:
            task.cancel()
        self._chain.clear()

    async def close(self) -> None:
        tasks = list(self._chain)
        self.clear()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _extend(self, first: Read | None = None) -> None:
        while len(self._chain) < self._depth:
            before = self._chain[-1] if self._chain else None
            if before is None and first is None:
                return
            coro = self._read(before, first)
            self._chain.append(asyncio.create_task(coro, name="influx-read-ahead"))
            first = None

    async def _read(
        self, before: asyncio.Task[_Ahead | None] | None, first: Read | None
    ) -> _Ahead | None:
        if before is not None:
            done = await asyncio.shield(before)
            if done is None or sum(e.count for e in done[1]) < done[0].limit:
                return None  # drained: nothing to read ahead
            first = Read(done[1][-1].key, done[0].limit)
        assert first is not None
        return first, await self._source.read(first.after, first.limit)


async def _sleep(seconds: float, wake: asyncio.Event | None) -> None:
    if wake is None:
        await asyncio.sleep(seconds)
        return
    if not wake.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
    wake.clear()
