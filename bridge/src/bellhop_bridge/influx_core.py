"""The InfluxDB sink's bookkeeping, shared by the gateway and the relay, without I/O.

    core = SinkCore(batch_size=5000, flush_interval_s=1.0)
    action = core.start(now)
    while True:                       # the driver (influx_driver.run_sink) carries out each action
        if isinstance(action, Read):   action = core.read_done(entries, now)
        if isinstance(action, Write):  action = core.write_done(outcome, now)
        if isinstance(action, Commit): action = core.committed(now)
        if isinstance(action, Wait):   action = core.woke(now)
        ...any step that raised:       action = core.failed(now)   # the same step again, later

What was applied (telemetry points and device events) is read from the store
in key order after the sink's durable position, batched, written, and the
position moves (`Commit`) only once InfluxDB accepted the batch. A failed
write is retried with capped exponential back-off and full jitter, the same
batch again, so nothing is skipped and a rewrite is harmless: a point is the
same series and timestamp every time. Entries the store lost before the sink
wrote them (retention) reach the core as entries without a line and are
counted with the batch they are committed with, never dropped silently.

`bellhop_bridge.influx_driver.run_sink` is the thin asyncio driver that
carries the actions out; `line` and its helpers format InfluxDB line protocol.
"""

from __future__ import annotations

import enum
import logging
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "Batch",
    "Commit",
    "Entry",
    "Outcome",
    "Read",
    "SinkCore",
    "SinkStatus",
    "Wait",
    "Write",
    "escape",
    "line",
    "point_line",
    "series_key",
]

log = logging.getLogger(__name__)

MEASUREMENT_TELEMETRY: Final = "telemetry"
MEASUREMENT_EVENT: Final = "device_event"


# -- line protocol ---------------------------------------------------------------------
_TAG_ESCAPES: Final = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n"})
_STRING_ESCAPES: Final = str.maketrans({'"': r"\"", "\\": "\\\\"})


def escape(text: str) -> str:
    """A measurement, tag key, tag value or field key as line protocol writes it."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    return text.translate(_TAG_ESCAPES)


def _field_value(value: float | int | bool | str) -> str | None:
    """A field value as line protocol writes it; None for one it cannot hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def line(
    measurement: str,
    tags: Mapping[str, str | None],
    fields: Mapping[str, float | int | bool | str],
    ts_ms: int,
) -> str | None:
    """One point in line protocol at millisecond precision; None when no field is writable.

    Tags without a value are left out (line protocol has no empty tag); tags
    are sorted by key, the order InfluxDB stores them in.
    """
    parts = [escape(measurement)]
    for key in sorted(tags):
        tag = tags[key]
        if tag:
            parts.append(f"{escape(key)}={escape(tag)}")
    written = []
    for key, value in fields.items():
        text = _field_value(value)
        if text is not None:
            written.append(f"{escape(key)}={text}")
    if not written:
        return None
    return f"{','.join(parts)} {','.join(written)} {ts_ms}"


def series_key(measurement: str, tags: Mapping[str, str | None]) -> str:
    """The measurement and tags part of a line, to reuse for every point of one device."""
    parts = [escape(measurement)]
    parts.extend(f"{escape(k)}={escape(v)}" for k in sorted(tags) if (v := tags[k]))
    return ",".join(parts)


def point_line(series: str, name: str, value: float, ts_ms: int) -> str | None:
    """One field of a `series_key` at millisecond precision; None if not finite."""
    if not math.isfinite(value):
        return None
    return f"{series} {escape(name)}={float(value)!r} {ts_ms}"


# -- the core ----------------------------------------------------------------------------
# Not frozen: one is made per point, and a frozen dataclass's __init__ costs three
# times as much (object.__setattr__ per field). Nothing changes one once made.
@dataclass(slots=True)
class Entry:
    """One applied record, as the store gave it.

    `key`: its position in the store (outbox seq, journal id); `line`: what to
    write, None if the record is gone from the store (lost) or cannot be
    written, "" if it is nothing InfluxDB is told about (a device record
    without a connectivity change): passed over, neither written nor lost;
    `applied_ms`: when the store took it, for the sink's lag; `count`: the
    records it stands for. A run of consecutive points can be one entry,
    its lines joined by newlines, `key` the run's last: a backlog then costs
    one object per read instead of one per point.
    """

    key: int
    line: str | None
    applied_ms: int
    count: int = 1


@dataclass(frozen=True, slots=True)
class Batch:
    """Consecutive entries written in one request and committed together."""

    entries: tuple[Entry, ...]
    # Refused by InfluxDB as malformed (a 4xx other than auth or rate): committed and counted.
    refused: bool = False

    @property
    def lines(self) -> list[str]:
        """What to send: each entry's text (a run's is several lines already)."""
        return [text for e in self.entries if (text := e.line)]

    @property
    def size(self) -> int:
        return sum(e.count for e in self.entries)

    @property
    def written(self) -> int:
        """Records InfluxDB has once this batch is accepted."""
        return 0 if self.refused else sum(e.count for e in self.entries if e.line)

    @property
    def keys(self) -> list[int]:
        return [e.key for e in self.entries]

    @property
    def last(self) -> int:
        return self.entries[-1].key

    @property
    def lost(self) -> int:
        """Entries of this batch that never reach InfluxDB."""
        if self.refused:
            return sum(e.count for e in self.entries if e.line != "")
        return sum(e.count for e in self.entries if e.line is None)


@dataclass(frozen=True, slots=True)
class Read:
    """Read up to `limit` entries after `after`; None: after the durable position."""

    after: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class Write:
    """Send the batch. `then`: the read that follows if it is accepted, None if that
    is not known yet (the store was drained): a driver may carry it out meanwhile."""

    batch: Batch
    then: Read | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """InfluxDB has the batch: make the store's position move past it, durably."""

    batch: Batch


@dataclass(frozen=True, slots=True)
class Wait:
    seconds: float
    # True while a failed step waits to be tried again (not a quiet poll).
    retrying: bool = False


Action = Read | Write | Commit | Wait


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # 2xx
    RETRY = "retry"  # unreachable, timeout, 5xx, 429, auth or bucket missing: try again
    REFUSED = "refused"  # malformed: trying again would never succeed


@dataclass(slots=True)
class SinkStatus:
    written: int = 0  # records (points, events) InfluxDB accepted
    lost: int = 0  # entries committed without reaching InfluxDB (gone from the store, refused)
    failures: int = 0  # consecutive failed steps
    last_error: str | None = None
    oldest_pending_ms: int | None = None  # applied time of the oldest entry not yet written


@dataclass(slots=True)
class SinkCore:
    """Fed what the driver did, returns what to do next (one action at a time)."""

    batch_size: int
    flush_interval_s: float
    retry_min_s: float = 0.5
    retry_max_s: float = 30.0
    rng: Callable[[], float] = random.random
    status: SinkStatus = field(default_factory=SinkStatus)
    _buffer: list[Entry] = field(default_factory=list)
    _buffered: int = 0  # records in the buffer (entries may be runs)
    _first_at: float = 0.0
    _after: int | None = None
    _pending: Action | None = None  # what a failed step or a wait resumes with
    _in_flight: Batch | None = None
    # The last read came back short: the store had no more, so the next read after a
    # commit starts from the durable position (see `committed`).
    _drained: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.flush_interval_s <= 0:
            raise ValueError("batch_size >= 1 and flush_interval_s > 0")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError("0 < retry_min_s <= retry_max_s")

    def start(self, now: float) -> Action:
        return self._read()

    def read_done(self, entries: Sequence[Entry], now: float) -> Action:
        asked = self._pending
        got = sum(e.count for e in entries)
        self._drained = not isinstance(asked, Read) or got < asked.limit
        if entries:
            if not self._buffer:
                self._first_at = now
            self._buffer.extend(entries)
            self._buffered += got
            self._after = entries[-1].key
        self.status.failures = 0
        self._note_oldest()
        if self._buffered >= self.batch_size:
            return self._send()
        if not self._buffer:
            return self._wait(self.flush_interval_s, self._read())
        due = self._first_at + self.flush_interval_s
        if now < due:
            # The store is drained for now: fill the batch until it is as old as allowed.
            return self._wait(due - now, self._read())
        return self._send()

    def write_done(self, outcome: Outcome, now: float, error: str | None = None) -> Action:
        batch = self._in_flight
        assert batch is not None, "write_done without a write"
        if outcome is Outcome.RETRY:
            return self.failed(now, error)
        if outcome is Outcome.REFUSED:
            batch = Batch(batch.entries, refused=True)
            self._in_flight = batch
            self.status.last_error = error
        return self._do(Commit(batch))

    def committed(self, now: float) -> Action:
        batch = self._in_flight
        assert batch is not None, "committed without a batch"
        self._in_flight = None
        del self._buffer[: len(batch.entries)]
        self._buffered -= batch.size
        self.status.written += batch.written
        self.status.lost += batch.lost
        self.status.failures = 0
        self._note_oldest()
        if self._buffer:
            self._first_at = now
            return self._read()
        if self._drained:
            # From the durable position again: on a store whose keys can commit out of
            # order (several writers), what committed late below the batch is found now.
            # Through a backlog, reads go on in key order (what `Write.then` announced).
            self._after = None
        return self._read()

    def failed(self, now: float, error: str | None = None) -> Action:
        """The step just asked for failed: the same step again after a back-off."""
        redo = self._pending
        assert redo is not None, "failed before any step"
        self.status.failures += 1
        self.status.last_error = error
        ceiling = min(self.retry_max_s, self.retry_min_s * 2 ** min(self.status.failures - 1, 30))
        # Full jitter, at least the minimum: many sinks do not retry in step.
        delay = max(self.retry_min_s, self.rng() * ceiling)
        return self._wait(delay, redo, retrying=True)

    def woke(self, now: float) -> Action:
        redo = self._pending
        assert redo is not None, "woke without a wait"
        return self._do(redo)

    # -- helpers ---------------------------------------------------------------------
    def _read(self) -> Action:
        return self._do(Read(self._after, self.batch_size - self._buffered))

    def _send(self) -> Action:
        # Reads never ask for more than fills the batch: the whole buffer is one batch.
        batch = Batch(tuple(self._buffer))
        self._in_flight = batch
        if not batch.lines:
            return self._do(Commit(batch))  # only lost entries: nothing to send
        # The buffer never holds more than a batch: once this one is committed it is empty.
        then = None if self._drained else Read(self._after, self.batch_size)
        return self._do(Write(batch, then))

    def _wait(self, seconds: float, then: Action, *, retrying: bool = False) -> Wait:
        self._pending = then
        return Wait(max(0.0, seconds), retrying=retrying)

    def _do(self, action: Action) -> Action:
        self._pending = action
        return action

    def _note_oldest(self) -> None:
        self.status.oldest_pending_ms = self._buffer[0].applied_ms if self._buffer else None
