"""Retention keeps the outbox rows the InfluxDB sink has not written yet, within bounds.

The relay acknowledged every row; the sink's cursor is behind. Rows above the cursor
stay (an InfluxDB outage longer than a retention interval loses nothing) until they
are older than `outbox_max_age_s` or further from the newest than `outbox_max_events`;
then they go and count as lost, alert and device records as well as points. With the
sink off, acknowledged rows go as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_edge.config import RetentionConfig
from bellhop_edge.store import history, outbox
from bellhop_edge.store.retention import RetentionReport, RetentionRun
from bellhop_edge.store.schema import Synchronous, connect, migrate, transaction

NOW = 1_700_000_000_000
DAY_MS = 86_400_000
POINTS = 100


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """An outbox of POINTS points and two records (an alert, a device), all acknowledged."""
    db = connect(tmp_path / "edge.db", Synchronous.NORMAL, cache_kib=2048)
    migrate(db)
    with transaction(db):
        series = history.SeriesIndex(db).id_for("r1-env", "temperature")
        rows = [(series, NOW - POINTS + i, float(i)) for i in range(POINTS)]
        history.insert_points(db, rows, outbox_ts=NOW)
        alert = common_pb2.Alert(alert_id="a1", state=common_pb2.ALERT_STATE_RAISED)
        outbox.append(db, NOW, outbox.OutboxKind.ALERT, bridge_pb2.OutboxEvent(alert=alert))
        device = common_pb2.Device(device_id="d1", connectivity=common_pb2.CONNECTIVITY_ONLINE)
        outbox.append(db, NOW, outbox.OutboxKind.DEVICE, bridge_pb2.OutboxEvent(device=device))
        last = outbox.last_seq(db)
        db.execute(
            "UPDATE outbox_state SET last_acked_seq = ?, last_acked_priority_seq = ?", (last, last)
        )
    yield db
    db.close()


def run(conn: sqlite3.Connection, now: int, **policy: object) -> RetentionReport:
    retention = RetentionRun(RetentionConfig.model_validate(policy), now)
    report = RetentionReport()
    while not retention.done:
        report += retention.step(conn)
    return report


def sink(conn: sqlite3.Connection, *, enabled: bool, cursor: int) -> None:
    with transaction(conn):
        conn.execute("UPDATE influx_sink SET enabled = ?, cursor = ?", (int(enabled), cursor))


def left(conn: sqlite3.Connection) -> tuple[list[int], int]:
    seqs = [int(r[0]) for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    return seqs, int(conn.execute("SELECT lost FROM influx_sink").fetchone()[0])


def test_rows_the_sink_has_not_written_stay_until_it_writes_them(conn: sqlite3.Connection) -> None:
    last = outbox.last_seq(conn)
    sink(conn, enabled=True, cursor=40)
    report = run(conn, NOW + DAY_MS)
    assert report.outbox_acked_deleted == 40
    assert left(conn) == (list(range(41, last + 1)), 0)
    # The sink caught up: the rest goes at the next run, nothing lost.
    sink(conn, enabled=True, cursor=last)
    run(conn, NOW + DAY_MS)
    assert left(conn) == ([], 0)


def test_with_the_sink_off_acknowledged_rows_go_as_before(conn: sqlite3.Connection) -> None:
    sink(conn, enabled=False, cursor=0)
    assert run(conn, NOW + DAY_MS).outbox_acked_deleted == POINTS + 2
    assert left(conn) == ([], 0)


def test_past_the_age_bound_they_go_and_count_as_lost(conn: sqlite3.Connection) -> None:
    sink(conn, enabled=True, cursor=40)
    # Younger than the bound: kept.
    run(conn, NOW + 2 * DAY_MS, outbox_max_age_s=3 * 86400)
    assert len(left(conn)[0]) == POINTS + 2 - 40
    # Older: every unwritten row goes, points, the alert and the device record alike.
    report = run(conn, NOW + 4 * DAY_MS, outbox_max_age_s=3 * 86400)
    assert report.outbox_acked_deleted == POINTS + 2 - 40
    assert left(conn) == ([], POINTS + 2 - 40)


def test_past_the_size_bound_the_oldest_go_and_count_as_lost(conn: sqlite3.Connection) -> None:
    last = outbox.last_seq(conn)
    sink(conn, enabled=True, cursor=0)
    # No more than 1000 seqs held: rows at or below last - 1000 go (here none, then 40).
    run(conn, NOW + DAY_MS, outbox_max_events=1000)
    assert len(left(conn)[0]) == POINTS + 2
    with transaction(conn):
        # 940 newer rows (the sink's cursor still at 0): the 40 oldest are over the bound.
        series = history.SeriesIndex(conn).id_for("r1-env", "humidity")
        rows = [(series, NOW + i, 1.0) for i in range(938)]
        history.insert_points(conn, rows, outbox_ts=NOW)
        newest = outbox.last_seq(conn)
        conn.execute("UPDATE outbox_state SET last_acked_seq = ?", (newest,))
    assert newest == last + 938
    run(conn, NOW + DAY_MS, outbox_max_events=1000)
    seqs, lost = left(conn)
    assert seqs == list(range(newest - 1000 + 1, newest + 1))
    assert lost == newest - 1000
