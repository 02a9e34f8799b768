"""The edge store on real SQLite files: schema, writer, outbox, commands, retention."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_edge.config import RetentionConfig
from bellhop_edge.core.commands import CommandRecord, CommandRequest
from bellhop_edge.core.model import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    CommandResult,
    CommandStatus,
    Connectivity,
    DesiredState,
    Device,
    DeviceEvent,
    DeviceKind,
    EventKind,
    ReportedState,
    Room,
    TelemetryPoint,
)
from bellhop_edge.core.ops import (
    AckOutbox,
    PutAlert,
    PutCommand,
    PutDesired,
    PutDevice,
    PutEvent,
    PutLastSeen,
    PutMessage,
    PutReported,
    PutTelemetry,
    WriteOp,
)
from bellhop_edge.errors import (
    InvalidAckError,
    SchemaVersionError,
    StoreError,
    WriteFailedError,
    WriterClosedError,
    WriterFullError,
)
from bellhop_edge.store import SCHEMA_VERSION, EdgeStore, OutboxKind, StoreWriter, WriterReport
from bellhop_edge.store.schema import MIGRATIONS
from sqlite_utils import Database

T0 = 1_800_000_000_000  # a fixed "now" in Unix ms
MIN = 60_000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.open(db_path) as opened:
        yield opened


def points(device: str, ts: int, **metrics: float) -> PutTelemetry:
    return PutTelemetry(tuple(TelemetryPoint(device, m, ts, v) for m, v in metrics.items()))


def command(cid: str, device: str, status: CommandStatus, **result: object) -> PutCommand:
    request = CommandRequest(cid, device, "set_setpoint", {"setpoint": 21}, T0 + MIN, "staff")
    done = None if status is CommandStatus.PENDING else T0 + 5
    outcome = CommandResult(cid, device, status, result or None, None, done)
    return PutCommand(CommandRecord(request, outcome, created_at=T0))


# -- schema -------------------------------------------------------------------------
def test_schema_is_versioned_and_reopening_keeps_data(db_path: Path) -> None:
    with EdgeStore.open(db_path) as store:
        store.upsert_room(Room("101", "Room 101", 1))
    with EdgeStore.open(db_path) as store:
        assert store.list_rooms() == [Room("101", "Room 101", 1)]
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_database_from_a_newer_gateway_is_refused_untouched(db_path: Path) -> None:
    EdgeStore.open(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="newer"):
        EdgeStore.open(db_path)
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    conn.close()


# -- registry and state -------------------------------------------------------------
async def test_writer_persists_every_record_kind(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev, lost = f"{test_name}-thermo", f"{test_name}-stray"
    store.upsert_room(Room("101", "Room 101", 1))
    store.upsert_device(Device(dev, "101", DeviceKind.THERMOSTAT, registered=True))
    alert = Alert(
        "a1", AlertKind.BREACH, AlertSeverity.CRITICAL, AlertState.RAISED, dev, "101", "x", T0
    )
    async with StoreWriter(db_path) as writer:
        writer.submit(points(dev, T0, temperature=21.5, setpoint=22.0))
        writer.submit(PutReported(ReportedState(dev, 3, {"mode": "heat"}, T0)))
        writer.submit(PutDesired(DesiredState(dev, 2, {"setpoint": 23}, T0, "staff:ana")))
        writer.submit(PutEvent(DeviceEvent(dev, EventKind.BUTTON, T0, {"press": "short"})))
        writer.submit(
            PutDevice(Device(lost, None, None, registered=False, connectivity=Connectivity.ONLINE))
        )
        writer.submit(PutLastSeen({dev: T0 + 7, lost: T0 + 9}))
        writer.submit(PutAlert(alert))
        await writer.flush()

    assert [d.device_id for d in store.list_devices()] == [dev]
    assert {d.device_id for d in store.list_devices(include_unknown=True)} == {dev, lost}
    stray = store.get_device(lost)
    assert stray is not None
    assert (stray.registered, stray.connectivity, stray.last_seen) == (
        False,
        Connectivity.ONLINE,
        T0 + 9,
    )
    assert store.load_reported()[dev] == ReportedState(dev, 3, {"mode": "heat"}, T0)
    assert store.load_desired()[dev] == DesiredState(dev, 2, {"setpoint": 23}, T0, "staff:ana")
    assert store.open_alerts() == [alert]
    assert store.list_alerts(states=[AlertState.CLEARED]) == []
    assert store.query_telemetry(dev, "temperature", T0, T0 + 1) == [
        TelemetryPoint(dev, "temperature", T0, 21.5)
    ]
    counts = store.counts()
    assert (counts.rooms, counts.devices, counts.unknown_devices, counts.open_alerts) == (
        1,
        1,
        1,
        1,
    )


def test_removing_a_device_drops_its_state_and_tells_the_cloud(
    store: EdgeStore, test_name: str
) -> None:
    dev = f"{test_name}-light"
    store.upsert_device(Device(dev, "101", DeviceKind.LIGHT, registered=True))
    store.apply(PutReported(ReportedState(dev, 1, {"on": True}, T0)))
    store.remove_device(dev)
    assert store.get_device(dev) is None
    assert dev not in store.load_reported()
    last = store.outbox_after(store.outbox_last_seq() - 1)[0].event()
    assert last.device.device_id == dev
    assert last.device.registered is False


# -- outbox ---------------------------------------------------------------------------
async def test_outbox_mirrors_writes_in_order_with_rising_sequence(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    async with StoreWriter(db_path) as writer:
        writer.submit(points(dev, T0, temperature=20.0, humidity=40.0))
        writer.submit(PutEvent(DeviceEvent(dev, EventKind.BATTERY, T0 + 1, {"battery": 9})))
        writer.submit(points(dev, T0 + 2, temperature=20.5))
        writer.submit(PutDesired(DesiredState(dev, 1, {"x": 1}, T0, "staff")))
        await writer.flush()

    entries = store.outbox_after(0)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.kind for e in entries] == [
        OutboxKind.TELEMETRY,
        OutboxKind.TELEMETRY,
        OutboxKind.DEVICE_EVENT,
        OutboxKind.TELEMETRY,
        OutboxKind.DESIRED,
    ]
    events = [e.event() for e in entries]
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[4].desired.values["x"] == 1
    assert (events[1].telemetry.metric, events[1].telemetry.value) == ("humidity", 40.0)
    assert events[1].telemetry.ts.ToMilliseconds() == T0
    assert events[2].device_event.kind == common_pb2.EVENT_KIND_BATTERY
    assert events[2].device_event.data["battery"] == 9
    assert store.outbox_after(2, limit=1)[0].seq == 3


async def test_acked_outbox_rows_are_pruned_and_sequences_never_reused(
    db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    with EdgeStore.open(db_path) as store:
        store.apply(*(points(dev, T0 + i, temperature=20.0) for i in range(5)))
        store.ack_outbox(5)
        with pytest.raises(InvalidAckError):
            store.ack_outbox(6)
        store.ack_outbox(3)  # an older, repeated ack does not move it back
        assert store.outbox_last_acked() == 5
        report = store.apply_retention(RetentionConfig(), T0)
        assert report.outbox_acked_deleted == 5
        assert store.outbox_after(0) == []
    with EdgeStore.open(db_path) as store:
        store.apply(points(dev, T0 + 9, temperature=20.0))
        assert [e.seq for e in store.outbox_after(store.outbox_last_acked())] == [6]
        assert store.counts().outbox_pending == 1


# -- commands -------------------------------------------------------------------------
async def test_a_final_command_result_survives_restarts_and_later_writes(
    db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-thermo"
    async with StoreWriter(db_path) as writer:
        writer.submit(command("c1", dev, CommandStatus.PENDING))
        writer.submit(command("c1", dev, CommandStatus.SUCCEEDED, setpoint=21))
        # A stale write racing in after the result must not overwrite it.
        writer.submit(command("c1", dev, CommandStatus.TIMED_OUT))
        await writer.flush()
    with EdgeStore.open(db_path) as store:
        record = store.get_command("c1")
        assert record is not None
        assert record.result.status is CommandStatus.SUCCEEDED
        assert record.result.result == {"setpoint": 21}
        assert record.request.params == {"setpoint": 21}
        assert record.request.requested_by == "staff"
        assert store.get_command("nope") is None
        results = [e.event() for e in store.outbox_after(0)]
        assert [r.command_result.command_id for r in results] == ["c1"]


# -- writer behaviour -------------------------------------------------------------------
async def test_a_bad_op_fails_alone_and_the_rest_of_its_batch_commits(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    async with StoreWriter(db_path) as writer:
        writer.submit(points(dev, T0, temperature=20.0))
        bad = PutReported(ReportedState(dev, 1, {"t": math.nan}, T0))  # JSON has no NaN
        failing = asyncio.ensure_future(writer.submit_and_wait(bad))
        writer.submit(points(dev, T0 + 1, temperature=21.0, humidity=math.inf))
        with pytest.raises(WriteFailedError):
            await failing
        await writer.flush()
        assert writer.stats.failed == 1
        assert writer.stats.rejected_points == 1
        assert writer.stats.committed == 2
    got = store.query_telemetry(dev, "temperature", T0, T0 + 10)
    assert [p.value for p in got] == [20.0, 21.0]
    assert store.query_telemetry(dev, "humidity", T0, T0 + 10) == []
    assert dev not in store.load_reported()


async def test_reports_name_each_ticket_that_failed(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    reports: list[WriterReport] = []
    ops: list[WriteOp] = [
        points(dev, T0, temperature=20.0),
        PutReported(ReportedState(dev, 1, {"t": math.nan}, T0)),  # JSON has no NaN
        points(dev, T0 + 1, temperature=21.0),
    ]
    async with StoreWriter(db_path) as writer:
        writer.add_listener(reports.append)
        for op in ops:
            writer.submit(op)
        await writer.flush()
    assert reports[-1].through == 3
    assert [t for r in reports for t in r.failed] == [2]
    assert not any(r.died for r in reports)


def _size(path: Path) -> int:
    return path.stat().st_size


async def test_a_size_limit_fails_writes_as_a_full_disk_would(
    db_path: Path, test_name: str
) -> None:
    EdgeStore.open(db_path).close()
    dev = f"{test_name}-env"
    async with StoreWriter(db_path, max_size_bytes=1 << 20) as writer:
        failed_at = None
        reports: list[WriterReport] = []
        writer.add_listener(reports.append)
        for i in range(20_000):
            writer.submit(points(dev, T0 + i, temperature=20.0, humidity=40.0, luminosity=300.0))
            if i % 500 == 499:
                await writer.flush()
                if any(r.failed for r in reports):
                    failed_at = i
                    break
        assert failed_at is not None, "1 MiB should not hold 60,000 points"
        assert "full" in (writer.stats.last_error or "")
    assert _size(db_path) <= 1 << 20


async def test_retention_on_a_full_database_frees_space_for_new_writes(
    db_path: Path, test_name: str
) -> None:
    EdgeStore.open(db_path).close()
    dev = f"{test_name}-door"
    week = 7 * 86400_000
    async with StoreWriter(db_path, max_size_bytes=1 << 20) as writer:
        # Old events and points fill the database to its limit; the points are
        # still staged, and moving them into their index would need new pages.
        filled = 0
        while writer.stats.failed == 0:
            for _ in range(100):
                filled += 1
                event = DeviceEvent(dev, EventKind.DOOR, T0 + filled, {"open": filled % 2 == 0})
                writer.submit(PutEvent(event))
                writer.submit(points(dev, T0 + filled, battery=50.0))
            await writer.flush()
        new = PutTelemetry([TelemetryPoint(dev, f"m{i}", T0 + 200 * week, 1.0) for i in range(300)])
        with pytest.raises(WriteFailedError):
            await writer.submit_and_wait(new)
        # Moving staged points needs new pages and fails; deleting old events
        # does not, and makes room.
        report = await writer.apply_retention(
            RetentionConfig(events_retention_s=86400), T0 + 100 * week
        )
        assert report.events_deleted > 0
        await writer.submit_and_wait(new)
    assert _size(db_path) <= 1 << 20


async def test_on_commit_runs_after_the_data_is_readable(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    seen: list[int] = []
    async with StoreWriter(db_path) as writer:
        writer.submit(points(dev, T0, temperature=20.0))
        writer.on_commit(
            lambda: seen.append(len(store.query_telemetry(dev, "temperature", 0, T0 + 1)))
        )
        assert seen == []
        await writer.flush()
        assert seen == [1]
        writer.on_commit(lambda: seen.append(-1))  # nothing pending: runs at once
        assert seen == [1, -1]


async def test_a_full_writer_refuses_submit_loudly_and_put_waits(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    async with StoreWriter(db_path, max_pending=3) as writer:
        for i in range(3):
            writer.submit(points(dev, T0 + i, temperature=20.0))
        with pytest.raises(WriterFullError):
            writer.submit(points(dev, T0 + 3, temperature=20.0))
        assert writer.stats.rejected_full == 1
        await writer.put(points(dev, T0 + 4, temperature=20.0))  # waits for a commit
        await writer.flush()
    got = store.query_telemetry(dev, "temperature", T0, T0 + 10)
    assert [p.ts for p in got] == [T0, T0 + 1, T0 + 2, T0 + 4]


async def test_close_commits_everything_and_then_refuses(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    writer = StoreWriter(db_path, max_batch=7)
    await writer.start()
    for i in range(500):
        writer.submit(points(dev, T0 + i, temperature=float(i)))
    await writer.close()
    assert len(store.query_telemetry(dev, "temperature", T0, T0 + 1000)) == 500
    assert writer.stats.largest_batch <= 7
    with pytest.raises(WriterClosedError):
        writer.submit(points(dev, T0, temperature=1.0))


async def test_writer_on_an_unusable_path_fails_to_start(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path / "missing-dir" / "edge.db")
    with pytest.raises(sqlite3.OperationalError):
        await writer.start()
    with pytest.raises(WriterClosedError):
        writer.submit(AckOutbox(0))
    await writer.close()


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


def test_a_version_1_database_is_migrated_forward_keeping_its_history(
    db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    MIGRATIONS[0](Database(conn, execute_plugins=False))
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO series (device_id, metric) VALUES (?, 'temperature')", (dev,))
    conn.execute("INSERT INTO telemetry VALUES (1, ?, 19.0)", (T0,))  # v1 wrote here directly
    conn.execute(
        "INSERT INTO desired_state VALUES (?, 2, '{\"setpoint\": 21.0}', ?, 'staff')", (dev, T0)
    )
    conn.close()
    with EdgeStore.open(db_path) as store:
        store.apply(points(dev, T0 + 1, temperature=20.0))
        got = store.query_telemetry(dev, "temperature", T0, T0 + 10)
        assert [(p.ts, p.value) for p in got] == [(T0, 19.0), (T0 + 1, 20.0)]
        # Desired state from before fields were kept: each field counts as set at once.
        (desired,) = store.load_desired().values()
        assert (desired.version, dict(desired.values), desired.fields) == (
            2,
            {"setpoint": 21.0},
            {},
        )
        assert desired.intents()["setpoint"].set_at_ms == T0
    conn = sqlite3.connect(db_path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 9
    conn.close()


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


async def test_a_failing_commit_callback_does_not_strand_the_others(
    db_path: Path, test_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    EdgeStore.open(db_path).close()
    called: list[str] = []

    def boom() -> None:
        raise RuntimeError("callback bug")

    async with StoreWriter(db_path) as writer:
        writer.submit(points(f"{test_name}-env", T0, temperature=1.0))
        writer.on_commit(boom)
        writer.on_commit(lambda: called.append("second"))
        await writer.flush()
    assert called == ["second"]
    assert "store writer callback failed" in caplog.text


def test_registry_version_and_receipts_survive_reopening(db_path: Path, test_name: str) -> None:
    dev = f"{test_name}-env"
    with EdgeStore.open(db_path) as store:
        assert store.registry_version() == 0
        assert store.bump_registry_version() == 1
        store.apply(
            PutMessage(-5, (points(dev, T0 + 5, temperature=21.0),)),
            points(dev, T0 + 7, temperature=21.5),  # QoS 0: no receipt
            PutMessage(2**63 - 1, (points(dev, T0 + 9, humidity=40.0),)),
        )
    with EdgeStore.open(db_path) as store:
        assert store.registry_version() == 1
        assert store.receipts(10) == [-5, 2**63 - 1]
        assert store.receipts(1) == [2**63 - 1]


async def test_a_message_whose_writes_fail_leaves_no_receipt(
    store: EdgeStore, db_path: Path, test_name: str
) -> None:
    dev = f"{test_name}-env"
    bad = PutReported(ReportedState(dev, 1, {"t": math.nan}, T0))  # JSON has no NaN
    async with StoreWriter(db_path) as writer:
        writer.submit(PutMessage(1, (points(dev, T0, temperature=20.0),)))
        writer.submit(PutMessage(2, (points(dev, T0 + 1, temperature=21.0), bad)))
        writer.submit(PutMessage(3, (points(dev, T0 + 2, temperature=22.0),)))
        await writer.flush()
    # All or nothing per message: the second one's point is not stored either.
    got = store.query_telemetry(dev, "temperature", T0, T0 + 10)
    assert [p.value for p in got] == [20.0, 22.0]
    assert store.receipts(10) == [1, 3]


async def test_the_writer_keeps_only_the_newest_receipts(db_path: Path, test_name: str) -> None:
    EdgeStore.open(db_path).close()
    dev = f"{test_name}-env"
    async with StoreWriter(db_path, receipts_kept=100, checkpoint_interval_s=0.01) as writer:
        for i in range(1, 501):
            writer.submit(PutMessage(i, (points(dev, T0 + i, temperature=20.0),)))
        await writer.flush()
        with EdgeStore.open(db_path) as store:
            async with asyncio.timeout(10):
                while len(store.receipts(1000)) > 100:
                    await asyncio.sleep(0.01)  # pruned between batches, at a checkpoint
            assert store.receipts(1000) == list(range(401, 501))


def test_live_status_never_brings_back_a_removed_device(db_path: Path) -> None:
    from bellhop_devices.messages import DeviceKind
    from bellhop_edge.core.model import Connectivity, Device
    from bellhop_edge.core.ops import PutDeviceStatus, RemoveDevice

    registered = Device("r1-light", "101", DeviceKind.LIGHT, registered=True)
    with EdgeStore.open(db_path) as store:
        store.upsert_room(Room("101", "Room 101", 1))
        store.upsert_device(registered)
        online = Device("r1-light", "101", DeviceKind.LIGHT, True, Connectivity.ONLINE, T0, "2.1")
        store.apply(PutDeviceStatus(online))
        assert store.get_device("r1-light") == online
        # A tool removes the device while the gateway's status write is still queued.
        store.apply(RemoveDevice("r1-light"), PutDeviceStatus(online))
        assert store.get_device("r1-light") is None
        stranger = Device("stranger", None, None, False, Connectivity.ONLINE, T0)
        store.apply(PutDeviceStatus(stranger))
        assert [d.device_id for d in store.list_devices(include_unknown=True)] == ["stranger"]
        assert store.list_devices() == []


def test_closing_waits_for_reads_in_flight_on_worker_threads(db_path: Path) -> None:
    """The bridge reads the outbox from worker threads; the gateway closes the store on its
    way out. Closing a connection under a running read crashed the whole process."""
    store = EdgeStore.open(db_path)
    for i in range(200):
        store.apply(points(f"dev-{i}", T0 + i, temperature=20.0))
    reads = [0] * 4
    ended: list[BaseException] = []
    started = threading.Barrier(len(reads) + 1)
    reading = threading.Barrier(len(reads) + 1)  # every reader is past its third read

    def reader(n: int) -> None:
        started.wait()
        try:
            while True:
                store.outbox_backlog()
                store.outbox_after(0, 50)
                reads[n] += 1
                if reads[n] == 3:
                    reading.wait(10)
        except StoreError as exc:  # the store closed: every later read says so
            ended.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(len(reads))]
    for thread in threads:
        thread.start()
    started.wait()
    reading.wait(10)  # every reader is reading, again and again
    store.close()
    for thread in threads:
        thread.join(10)
    assert [str(e) for e in ended] == ["the store is closed"] * len(reads)
