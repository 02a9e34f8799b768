"""The edge store's writer on real SQLite files: batches, failures, a full disk, closing."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import pytest
from bellhop_edge.config import RetentionConfig
from bellhop_edge.core.model import (
    DeviceEvent,
    EventKind,
    ReportedState,
    TelemetryPoint,
)
from bellhop_edge.core.ops import (
    AckOutbox,
    PutEvent,
    PutReported,
    PutTelemetry,
    WriteOp,
)
from bellhop_edge.errors import (
    WriteFailedError,
    WriterClosedError,
    WriterFullError,
)
from bellhop_edge.store import EdgeStore, StoreWriter, WriterReport

from tests.integration.edge.store_support import T0, points


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
