"""The edge store's retention and history on real SQLite files: roll-ups, the outbox's
limits and lanes, compaction, reads from worker threads."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from bellhop.bridge.v1 import bridge_pb2
from bellhop_edge.config import RetentionConfig
from bellhop_edge.core.model import (
    DeviceEvent,
    EventKind,
)
from bellhop_edge.core.ops import (
    PutEvent,
    PutLastSeen,
)
from bellhop_edge.store import EdgeStore, OutboxKind, StoreWriter

from tests.integration.edge.store_support import MIN, T0, points


# -- retention and history ------------------------------------------------------------------
async def test_retention_rolls_old_raw_points_into_buckets_and_queries_span_both(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    policy = RetentionConfig(
        raw_retention_s=3600,
        rollup_bucket_s=300,
        rollup_retention_s=86400,
        events_retention_s=86400,
        outbox_max_age_s=None,
        series_per_chunk=1,
    )
    now = T0 + 2 * 3600 * 1000  # T0 is bucket-aligned; raw cutoff = T0 + 1 h
    async with StoreWriter(db_path) as writer:
        # Bucket T0: 10, 20, 30 (min 10, max 30, avg 20); bucket T0+5min: 40.
        for offset, value in ((0, 10.0), (MIN, 20.0), (2 * MIN, 30.0), (5 * MIN, 40.0)):
            writer.submit(points(dev, T0 + offset, temperature=value, humidity=50.0))
        writer.submit(points(dev, now - MIN, temperature=22.0))  # still raw
        writer.submit(PutEvent(DeviceEvent(dev, EventKind.BUTTON, T0 - 2 * 86400_000)))
        writer.submit(PutEvent(DeviceEvent(dev, EventKind.BUTTON, now)))
        report = await writer.apply_retention(policy, now)

    assert report.raw_rows_rolled_up == 8
    assert report.events_deleted == 1
    assert report.transactions >= 3  # one per series, then each prune
    got = store.query_telemetry(dev, "temperature", T0, now)
    assert [(p.ts, p.value) for p in got] == [
        (T0, 20.0),
        (T0 + 5 * MIN, 40.0),
        (now - MIN, 22.0),
    ]
    conn = sqlite3.connect(db_path)
    row = conn.execute(
        "SELECT min, max, count FROM telemetry_rollup r JOIN series s USING (series_id)"
        " WHERE s.metric = 'temperature' AND bucket_start = ?",
        (T0,),
    ).fetchone()
    assert row == (10.0, 30.0, 3)
    conn.close()

    # A day later the T0 buckets have aged out and the last raw point is a rollup.
    later = T0 + 86400_000 + 3600_000
    report = store.apply_retention(policy, later)
    assert report.rollup_rows_deleted == 4
    assert [(p.ts, p.value) for p in store.query_telemetry(dev, "temperature", 0, later)] == [
        (now - 5 * MIN, 22.0)
    ]


async def test_late_points_for_a_rolled_bucket_merge_into_it(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    policy = RetentionConfig(raw_retention_s=60.0, rollup_bucket_s=300.0)  # config gives floats
    now = T0 + 3600_000
    store.apply(points(dev, T0, temperature=10.0))
    store.apply_retention(policy, now)
    store.apply(points(dev, T0 + MIN, temperature=30.0))  # a device that was offline
    store.apply_retention(policy, now)
    assert [(p.ts, p.value) for p in store.query_telemetry(dev, "temperature", 0, now)] == [
        (T0, 20.0)
    ]


def test_unacked_outbox_events_past_the_age_limit_leave_a_gap_record(
    store: EdgeStore, test_name: str
) -> None:
    dev = f"{test_name}-env"
    store.apply(points(dev, T0, temperature=1.0, humidity=2.0))
    policy = RetentionConfig(outbox_max_age_s=3600)
    entries = store.outbox_after(0)
    assert store.apply_retention(policy, entries[0].ts + 1000).outbox_unacked_dropped == 0
    dropped = store.apply_retention(policy, entries[0].ts + 3601_000).outbox_unacked_dropped
    assert dropped == 2
    (gap,) = [e.event() for e in store.outbox_after(0)]
    assert gap.lane == bridge_pb2.LANE_BULK
    assert (gap.gap.first_seq, gap.gap.last_seq) == (1, 2)
    assert (gap.gap.telemetry_points, gap.gap.other_events) == (2, 0)
    assert gap.gap.reason == "outbox_too_old"


def test_over_its_cap_the_outbox_thins_raw_telemetry_and_nothing_else(
    store: EdgeStore, test_name: str
) -> None:
    dev = f"{test_name}-env"
    store.apply(*(points(dev, T0 + i, temperature=20.0) for i in range(1500)))
    alarm = DeviceEvent(dev, EventKind.BREACH, T0 + 1500, {})
    store.apply(PutEvent(alarm))
    store.apply(*(points(dev, T0 + 2000 + i, temperature=21.0) for i in range(600)))
    policy = RetentionConfig(outbox_max_events=1000, outbox_max_age_s=None)
    report = store.apply_retention(policy, T0 + 3000)
    assert report.outbox_thinned == 1101  # 2,101 unacked, a cap of 1,000
    entries = store.outbox_after(0, limit=5000)
    kinds = [e.kind for e in entries]
    assert kinds.count(OutboxKind.DEVICE_EVENT) == 1, "an alarm is never thinned"
    (gap,) = [e.event().gap for e in entries if e.kind is OutboxKind.GAP]
    assert (gap.first_seq, gap.last_seq, gap.telemetry_points) == (1, 1101, 1101)
    assert gap.reason == "outbox_full"
    kept = [
        e.event().telemetry.ts.ToMilliseconds() for e in entries if e.kind is OutboxKind.TELEMETRY
    ]
    assert kept[0] == T0 + 1101, "the oldest points go first"
    assert store.counts().outbox_pending == 1001  # the newest 999 points, the alarm, the gap


def test_each_lane_is_read_and_acknowledged_on_its_own(store: EdgeStore, test_name: str) -> None:
    dev = f"{test_name}-door"
    store.apply(points(dev, T0, battery=50.0))
    store.apply(PutEvent(DeviceEvent(dev, EventKind.BREACH, T0 + 1, {})))  # an alarm
    store.apply(points(dev, T0 + 2, battery=49.0))
    bulk = bridge_pb2.LANE_BULK
    priority = bridge_pb2.LANE_PRIORITY
    assert [e.seq for e in store.outbox_after(0, lane=priority)] == [2]
    assert [e.seq for e in store.outbox_after(0, lane=bulk)] == [1, 3]
    assert store.outbox_after(0, lane=priority)[0].event().lane == priority
    store.ack_outbox(2, priority)
    assert store.outbox_acked() == {bulk: 0, priority: 2}
    assert store.counts().outbox_pending == 2
    written = store.outbox_after(0)[0].ts  # outbox rows carry the gateway's clock
    report = store.apply_retention(RetentionConfig(), written)
    assert report.outbox_acked_deleted == 1
    assert [e.seq for e in store.outbox_after(0)] == [1, 3]


def test_routine_device_events_keep_their_place_in_the_bulk_lane(
    store: EdgeStore, test_name: str
) -> None:
    dev = f"{test_name}-door"
    store.apply(PutEvent(DeviceEvent(dev, EventKind.DOOR, T0, {"open": True})))
    store.apply(PutEvent(DeviceEvent(dev, EventKind.GAS, T0 + 1, {})))
    store.apply(PutEvent(DeviceEvent(dev, EventKind.BUTTON, T0 + 2, {})))
    assert [e.seq for e in store.outbox_after(0, lane=bridge_pb2.LANE_PRIORITY)] == [2]
    assert [e.seq for e in store.outbox_after(0, lane=bridge_pb2.LANE_BULK)] == [1, 3]


async def test_staged_points_are_compacted_without_changing_what_queries_see(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    # compact_rows=8: compaction starts after 8 staged points, 2 per transaction.
    async with StoreWriter(db_path, compact_rows=8, compact_interval_s=3600) as writer:
        for i in range(10):
            writer.submit(points(dev, T0 + i, temperature=float(i)))
        await writer.flush()
        before = store.query_telemetry(dev, "temperature", T0, T0 + 100)
        # A redelivered point with the same ts: the newest value wins, staged or not.
        writer.submit(points(dev, T0 + 3, temperature=33.0))
        for _ in range(20):  # each batch lets one compaction chunk run
            await writer.submit_and_wait(PutLastSeen({}))
        assert writer.stats.compacted >= 8
    after = store.query_telemetry(dev, "temperature", T0, T0 + 100)
    assert [p.value for p in before] == [float(i) for i in range(10)]
    assert [p.value for p in after] == [0.0, 1.0, 2.0, 33.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    conn = sqlite3.connect(db_path)
    compacted = conn.execute("SELECT count(*) FROM telemetry").fetchone()[0]
    conn.close()
    assert compacted >= 8


async def test_history_and_outbox_reads_work_from_worker_threads(
    store: EdgeStore, test_name: str
) -> None:
    dev = f"{test_name}-env"
    store.apply(*(points(dev, T0 + i, temperature=float(i)) for i in range(50)))

    def read() -> tuple[int, int]:
        got = store.query_telemetry(dev, "temperature", T0, T0 + 100)
        return len(got), len(store.outbox_after(0, limit=100))

    results = await asyncio.gather(*(asyncio.to_thread(read) for _ in range(8)))
    assert results == [(50, 50)] * 8


async def test_ingest_is_committed_between_retention_steps(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    policy = RetentionConfig(raw_retention_s=60, series_per_chunk=1, outbox_max_age_s=None)
    old = [points(f"{test_name}-{i}", T0, temperature=1.0) for i in range(40)]
    store.apply(*old)
    committed_during: list[int] = []
    async with StoreWriter(db_path) as writer:
        retention = asyncio.ensure_future(writer.apply_retention(policy, T0 + 3600_000))
        for i in range(20):
            await asyncio.sleep(0)
            writer.submit(points(f"{test_name}-new", T0 + i, temperature=2.0))
            writer.on_commit(lambda: committed_during.append(int(not retention.done())))
        report = await retention
        await writer.flush()
    assert report.transactions > 40  # one per series, and more
    assert report.raw_rows_rolled_up == 40
    assert sum(committed_during) > 0  # some ingest committed while retention was running
