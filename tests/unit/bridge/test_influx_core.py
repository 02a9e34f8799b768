"""The InfluxDB sink's core, table by table: batching, the position moving only after
InfluxDB accepted a batch, retries with back-off, lost entries counted, line protocol."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable

import pytest
from bellhop_bridge.influx_core import (
    Batch,
    Commit,
    Entry,
    Outcome,
    Read,
    SinkCore,
    Wait,
    Write,
    line,
    point_line,
    series_key,
)
from bellhop_bridge.influx_driver import classify, run_sink


def entries(first: int, count: int, *, lost: set[int] | None = None) -> list[Entry]:
    lost = lost or set()
    return [
        Entry(k, None if k in lost else f"m v={k} {k}", 1000 + k)
        for k in range(first, first + count)
    ]


def core(batch: int = 3, flush: float = 1.0) -> SinkCore:
    return SinkCore(batch_size=batch, flush_interval_s=flush, rng=lambda: 1.0)


def test_a_full_read_is_written_at_once_and_committed_only_once_accepted() -> None:
    c = core()
    assert c.start(0.0) == Read(None, 3)
    action = c.read_done(entries(1, 3), 0.0)
    assert isinstance(action, Write)
    assert action.batch.keys == [1, 2, 3]
    assert c.status.oldest_pending_ms == 1001
    # The read was full (a backlog): the next one goes on after it, announced with the write.
    assert action.then == Read(3, 3)
    commit = c.write_done(Outcome.ACCEPTED, 0.1)
    assert commit == Commit(action.batch)
    assert c.committed(0.2) == Read(3, 3)
    assert (c.status.written, c.status.lost) == (3, 0)
    assert c.status.oldest_pending_ms is None
    # A short read drained the store: after its commit, from the durable position again
    # (on a store whose keys commit out of order, what committed late below is found).
    c.read_done(entries(4, 1), 0.3)
    write = c.woke(1.3)
    assert write == Read(4, 2)
    write = c.read_done([], 1.3)
    assert isinstance(write, Write)
    assert write.then is None
    c.write_done(Outcome.ACCEPTED, 1.4)
    assert c.committed(1.4) == Read(None, 3)


@pytest.mark.parametrize(
    ("reads", "times", "expected"),
    [
        # A partial read waits for the rest until the batch is as old as allowed...
        ([2, 0], [0.0, 0.4], [Wait(1.0), Wait(0.6)]),
        # ...then goes out as it is.
        ([2, 0], [0.0, 1.0], [Wait(1.0), "write 2"]),
        # More arriving fills it to its size.
        ([2, 1], [0.0, 0.5], [Wait(1.0), "write 3"]),
        # Nothing at all: a quiet poll every flush interval.
        ([0, 0], [0.0, 1.0], [Wait(1.0), Wait(1.0)]),
    ],
)
def test_batches_fill_up_to_their_size_or_their_age(
    reads: list[int], times: list[float], expected: list[object]
) -> None:
    c = core()
    action = c.start(0.0)
    key = 1
    for count, now, want in zip(reads, times, expected, strict=True):
        if isinstance(action, Wait):
            action = c.woke(now)
        assert isinstance(action, Read)
        # After the first entries, reads continue past what is buffered.
        assert action.after == (None if key == 1 else key - 1)
        action = c.read_done(entries(key, count), now)
        key += count
        if isinstance(want, str):
            assert isinstance(action, Write)
            assert len(action.batch.keys) == int(want.split()[1])
        else:
            assert action == want


def test_a_failed_write_is_retried_with_growing_capped_delays_and_the_same_batch() -> None:
    c = SinkCore(batch_size=2, flush_interval_s=1.0, retry_min_s=0.5, retry_max_s=4.0)
    c.rng = lambda: 1.0
    c.start(0.0)
    write = c.read_done(entries(1, 2), 0.0)
    assert isinstance(write, Write)
    delays = []
    for attempt in range(6):
        wait = c.write_done(Outcome.RETRY, float(attempt), "ConnectionRefusedError")
        assert isinstance(wait, Wait)
        assert wait.retrying
        delays.append(wait.seconds)
        assert c.woke(float(attempt)) == write  # the very same batch, nothing skipped
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert c.status.failures == 6
    assert c.status.written == 0  # nothing is committed while InfluxDB refuses
    assert isinstance(c.write_done(Outcome.ACCEPTED, 7.0), Commit)
    c.committed(7.0)
    assert (c.status.failures, c.status.written) == (0, 2)


def test_jitter_never_goes_below_the_minimum_delay() -> None:
    c = SinkCore(batch_size=1, flush_interval_s=1.0, retry_min_s=0.5, rng=lambda: 0.0)
    c.start(0.0)
    c.read_done(entries(1, 1), 0.0)
    wait = c.write_done(Outcome.RETRY, 0.0)
    assert wait == Wait(0.5, retrying=True)


def test_a_failed_read_or_commit_is_tried_again_as_it_was() -> None:
    c = core()
    read = c.start(0.0)
    assert isinstance(c.failed(0.0, "OperationalError: database is locked"), Wait)
    assert c.woke(1.0) == read
    c.read_done(entries(1, 3), 1.0)
    commit = c.write_done(Outcome.ACCEPTED, 1.0)
    assert isinstance(c.failed(1.0, "OperationalError"), Wait)
    assert c.woke(2.0) == commit
    assert c.status.written == 0  # only a commit that went through counts


def test_entries_lost_to_retention_are_committed_and_counted_never_sent() -> None:
    c = core()
    c.start(0.0)
    write = c.read_done(entries(1, 3, lost={2}), 0.0)
    assert isinstance(write, Write)
    assert write.batch.lines == ["m v=1 1", "m v=3 3"]
    c.write_done(Outcome.ACCEPTED, 0.0)
    c.committed(0.0)
    assert (c.status.written, c.status.lost) == (2, 1)
    # A batch of nothing but lost entries is committed without a request.
    commit = c.read_done(entries(4, 3, lost={4, 5, 6}), 0.0)
    assert isinstance(commit, Commit)
    c.committed(0.0)
    assert (c.status.written, c.status.lost) == (2, 4)


def test_a_batch_influxdb_refuses_is_committed_and_counted_as_lost() -> None:
    c = core()
    c.start(0.0)
    c.read_done(entries(1, 3), 0.0)
    commit = c.write_done(Outcome.REFUSED, 0.0, "HTTP 400: unable to parse")
    assert isinstance(commit, Commit)
    assert commit.batch.refused
    c.committed(0.0)
    assert (c.status.written, c.status.lost, c.status.last_error) == (
        0,
        3,
        "HTTP 400: unable to parse",
    )


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.status = status
        self.message = "bad line"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ConnectionRefusedError(), Outcome.RETRY),
        (TimeoutError(), Outcome.RETRY),
        (_HttpError(503), Outcome.RETRY),
        (_HttpError(429), Outcome.RETRY),
        (_HttpError(401), Outcome.RETRY),
        (_HttpError(404), Outcome.RETRY),
        (_HttpError(400), Outcome.REFUSED),
        (_HttpError(413), Outcome.REFUSED),
        (_HttpError(422), Outcome.REFUSED),
    ],
)
def test_errors_are_retried_unless_the_request_can_never_succeed(
    error: Exception, outcome: Outcome
) -> None:
    assert classify(error)[0] is outcome


@pytest.mark.parametrize(
    ("tags", "fields", "expected"),
    [
        (
            {"hotel": "h 1", "device": "a,b=c", "room": None, "org": ""},
            {"temperature": 21.5},
            r"telemetry,device=a\,b\=c,hotel=h\ 1 temperature=21.5 1700000000000",
        ),
        (
            {"device": "d"},
            {"count": 1, "open": True, "reason": 'forced "x"', "bad": math.nan},
            r'telemetry,device=d count=1i,open=true,reason="forced \"x\"" 1700000000000',
        ),
        ({"device": "d"}, {"bad": math.inf}, None),
    ],
)
def test_line_protocol(
    tags: dict[str, str | None], fields: dict[str, float | int | bool | str], expected: str | None
) -> None:
    assert line("telemetry", tags, fields, 1_700_000_000_000) == expected


def test_a_point_line_reuses_its_series_and_skips_what_is_not_finite() -> None:
    series = series_key("telemetry", {"room": "101", "device": "r1 env", "kind": None})
    assert series == r"telemetry,device=r1\ env,room=101"
    assert point_line(series, "gas_ppm", 3, 5) == r"telemetry,device=r1\ env,room=101 gas_ppm=3.0 5"
    assert point_line(series, "t", math.nan, 5) is None


def test_batch_accounting() -> None:
    batch = Batch(tuple(entries(1, 4, lost={3})))
    assert (batch.last, batch.lost, len(batch.lines)) == (4, 1, 3)
    assert Batch(batch.entries, refused=True).lost == 4


def test_a_run_entry_counts_as_the_records_it_stands_for() -> None:
    c = core(batch=5)
    c.start(0.0)
    run = Entry(3, "m v=1 1\nm v=2 2\nm v=3 3", 1001, count=3)
    # Three records of five: the batch waits for the rest, and asks for two more.
    assert c.read_done([run], 0.0) == Wait(1.0)
    assert c.woke(0.5) == Read(3, 2)
    write = c.read_done([Entry(4, None, 1004), Entry(5, "", 1005)], 0.5)
    assert isinstance(write, Write)
    assert write.then == Read(5, 5)  # full: a backlog, the next read is known
    assert (write.batch.size, write.batch.written, write.batch.lost) == (5, 3, 1)
    assert write.batch.lines == ["m v=1 1\nm v=2 2\nm v=3 3"]  # "" is passed over
    c.write_done(Outcome.ACCEPTED, 0.6)
    c.committed(0.6)
    assert (c.status.written, c.status.lost) == (3, 1)
    refused = Batch((run, Entry(4, None, 1), Entry(5, "", 1)), refused=True)
    assert (refused.lost, refused.written) == (4, 0)


class _Store:
    """A source of `total` one-line entries; records each read and how many ran at once."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.reads: list[tuple[int | None, int]] = []
        self.committed = 0
        self.running = 0
        self.overlapped = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def read(self, after: int | None, limit: int) -> list[Entry]:
        self.reads.append((after, limit))
        start = self.committed if after is None else after
        await self.gate.wait()
        return entries(start + 1, max(0, min(limit, self.total - start)))

    async def commit(self, batch: Batch) -> None:
        self.committed = batch.last


class _Influx:
    def __init__(self, store: _Store, fail: int = 0) -> None:
        self.store = store
        self.fail = fail
        self.lines: list[str] = []

    async def write(self, lines: Iterable[str]) -> tuple[Outcome, str | None]:
        # What was read ahead while this request is in flight shows as reads past it.
        self.store.running += 1
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.store.running -= 1
        if self.fail:
            self.fail -= 1
            return Outcome.RETRY, "HTTP 503"
        self.lines.extend(lines)
        return Outcome.ACCEPTED, None


async def _drain(store: _Store, influx: _Influx, read_ahead: int) -> list[tuple[int | None, int]]:
    c = SinkCore(batch_size=10, flush_interval_s=0.01, retry_min_s=0.001, retry_max_s=0.002)
    task = asyncio.create_task(run_sink(c, store, influx, read_ahead=read_ahead))
    try:
        async with asyncio.timeout(5):
            while store.committed < store.total:
                await asyncio.sleep(0.001)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return store.reads


@pytest.mark.parametrize("read_ahead", [0, 1, 3])
async def test_reading_ahead_changes_when_reads_happen_never_what_is_written(
    read_ahead: int,
) -> None:
    store = _Store(95)
    influx = _Influx(store, fail=2)  # two failed writes on the way: the same batch again
    reads = await _drain(store, influx, read_ahead)
    assert influx.lines == [f"m v={k} {k}" for k in range(1, 96)]  # each once, in order
    assert store.committed == 95
    # Reads start at the durable position or right after a batch (95: the short last one
    # waits to fill up), nowhere else (what was
    # read ahead while a write failed is dropped and read again).
    assert {after for after, _ in reads} <= {None, *range(10, 100, 10), 95}


async def test_reads_ahead_are_bounded_and_cancelled_with_the_sink() -> None:
    store = _Store(1000)
    store.gate.clear()  # reads hang: what the driver started shows in `reads`
    c = SinkCore(batch_size=10, flush_interval_s=0.01)
    # A first read returned at once, then every read blocks.
    first = entries(1, 10)
    source_read = store.read

    async def read(after: int | None, limit: int) -> list[Entry]:
        if not store.reads:
            store.reads.append((after, limit))
            return first
        return await source_read(after, limit)

    store.read = read  # type: ignore[method-assign]
    influx = _Influx(store)
    task = asyncio.create_task(run_sink(c, store, influx, read_ahead=2))

    def ahead() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() if t.get_name() == "influx-read-ahead"}

    async with asyncio.timeout(5):
        while store.committed < 10 or len(ahead()) < 2:
            await asyncio.sleep(0.001)
    # The first batch is committed and its successor wanted; two reads ahead exist (the
    # second waits for the first's last key), no more.
    assert store.reads == [(None, 10), (10, 10)]
    tasks = ahead()
    assert len(tasks) == 2
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert all(t.done() for t in tasks)
