"""The line protocol the gateway stores with applied points for its InfluxDB sink.

With the sink on, each run of points the writer applies is kept as lines in
the same transaction, and the sink sends them as they are: the same lines as
it would make from the outbox's rows, device events in their place among
them, points applied without lines (too far behind) read from the rows. The
lines survive a restart and an InfluxDB outage and each point reaches a real
server once; what retention deletes first is counted lost and never written
from stale lines; a sink that is off keeps nothing. A device the registry
tool moves is tagged with its new room from then on, and a run larger than
the sink's batch is sent in batches no larger, resuming inside a run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sqlite3
from pathlib import Path

import pytest
from bellhop_bridge.influx_core import Batch, SinkCore
from bellhop_bridge.influx_driver import ClientWriter, run_sink
from bellhop_devices.messages import EventKind
from bellhop_edge import influx_client
from bellhop_edge.config import EdgeConfig, InfluxConfig, RetentionConfig
from bellhop_edge.core.model import DeviceEvent, TelemetryPoint
from bellhop_edge.core.ops import PutEvent, PutTelemetry, WriteOp
from bellhop_edge.influx import InfluxSink, OutboxSource
from bellhop_edge.store import EdgeStore, history, influx_lines
from bellhop_edge.store.apply import Applier
from bellhop_edge.store.retention import RetentionRun
from bellhop_edge.store.schema import MIGRATIONS, Synchronous, connect, migrate, transaction
from pydantic import SecretStr
from sqlite_utils import Database

from tests.support.victoria import victoria_metrics
from tests.support.waiting import until

HOTEL = "h-lines"
ORG = "org-lines"
ENV = "r101-env"
DOOR = "r101-door"
NOW = 1_700_000_000_000
RUN = 100  # points a transaction
TAGS = f"device={ENV},hotel={HOTEL},kind=environment_sensor,org={ORG},room=101"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "edge" / "edge.db"
    path.parent.mkdir()
    conn = connect(path, Synchronous.NORMAL, cache_kib=2048)
    migrate(conn)
    with transaction(conn):
        conn.executemany(
            "INSERT INTO devices (device_id, room_id, kind, registered, connectivity)"
            " VALUES (?, '101', ?, 1, 'online')",
            [(ENV, "environment_sensor"), (DOOR, "door_sensor")],
        )
    conn.close()
    return path


class Writer:
    """The gateway writer's way of applying ops: one transaction a batch."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, Synchronous.NORMAL, cache_kib=2048)
        self.applier = Applier(self.conn)
        self.expected: list[str] = []  # every telemetry line, in the order applied
        self.events = 0
        self._sent = 0

    def points(self, runs: int, *, event_between: bool = False, size: int = RUN) -> None:
        for _ in range(runs):
            ops: list[WriteOp] = []
            for _ in range(size // 2):
                self._sent += 1
                ts = NOW + self._sent
                value = 20 + self._sent % 7 + 0.1
                ops.append(
                    PutTelemetry(
                        [
                            TelemetryPoint(ENV, "temperature", ts, value),
                            TelemetryPoint(ENV, "humidity", ts, 40.5),
                        ]
                    )
                )
                self.expected.append(f"telemetry,{TAGS} temperature={value!r} {ts}")
                self.expected.append(f"telemetry,{TAGS} humidity=40.5 {ts}")
            self._apply(ops)
            if event_between:
                ts = NOW + self._sent
                self._apply([PutEvent(DeviceEvent(DOOR, EventKind.DOOR, ts, {"open": True}))])
                self.events += 1

    def _apply(self, ops: list[WriteOp]) -> None:
        with transaction(self.conn):
            self.applier.apply_batch(ops, NOW)

    def stored(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM influx_lines").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def source(path: Path) -> OutboxSource:
    src = OutboxSource(connect(path, Synchronous.NORMAL, cache_kib=2048), hotel_id=HOTEL, org=ORG)
    src.open()
    return src


async def read_all(src: OutboxSource, batch: int, *, commit: bool = False) -> list[str]:
    """Every line the sink would send from its cursor on, in batches of `batch`."""
    lines: list[str] = []
    after = src.cursor
    while entries := await src.read(after, batch):
        lines.extend(text for e in entries if e.line for text in e.line.split("\n"))
        after = entries[-1].key
        if commit:
            await src.commit(Batch(tuple(entries)))
    return lines


def telemetry(lines: list[str]) -> list[str]:
    return [text for text in lines if text.startswith("telemetry,")]


async def test_a_sink_that_is_off_keeps_no_lines(database: Path) -> None:
    writer = Writer(database)
    writer.points(3)
    assert writer.stored() == 0
    src = source(database)  # on: from what comes next
    writer.points(3)
    assert writer.stored() == 3  # one row of lines a transaction
    assert telemetry(await read_all(src, 1000)) == writer.expected[3 * RUN :]
    src.close()
    # Turned off: what was kept goes, and nothing more is kept.
    config = EdgeConfig(hotel_id=HOTEL, data_dir=database.parent)
    async with InfluxSink.running(config) as sink:
        assert sink is None
    writer.points(2)
    assert writer.stored() == 0
    writer.close()


async def test_stored_lines_are_the_lines_of_the_rows_with_events_in_their_place(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = source(database)
    writer = Writer(database)
    # Lines are kept up to 450 points behind the cursor: the later runs have none.
    monkeypatch.setattr(influx_lines, "MAX_BACKLOG", 450)
    writer.points(8, event_between=True)
    assert writer.stored() == 4
    for batch in (250, 1000, 37):
        lines = await read_all(src, batch)
        assert telemetry(lines) == writer.expected
        door = [n for n, text in enumerate(lines) if text.startswith("device_event,")]
        # One door event after each run of points.
        assert door == [(RUN + 1) * n + RUN for n in range(writer.events)]
    # Written: the lines go, the sink's cursor past them.
    await read_all(src, 250, commit=True)
    assert writer.stored() == 0
    assert await src.read(None, 250) == []
    src.close()
    writer.close()


async def test_points_that_retention_deletes_first_are_lost_not_written(
    database: Path,
) -> None:
    src = source(database)
    writer = Writer(database)
    writer.points(11, event_between=True)
    with transaction(writer.conn):
        last = int(writer.conn.execute("SELECT max(seq) FROM outbox").fetchone()[0])
        writer.conn.execute(
            "UPDATE outbox_state SET last_acked_seq = ?, last_acked_priority_seq = ?",
            (last, last),
        )
    # At most 1,000 outbox seqs kept: the 111 oldest go before the sink wrote them, a
    # run, an event and the first 10 points of the next run.
    retention = RetentionRun(RetentionConfig(outbox_max_events=1000), NOW + 1)
    while not retention.done:
        retention.step(writer.conn)
    assert writer.stored() == 9  # the run cut short went with its first points
    lines = await read_all(src, 1000, commit=True)
    assert telemetry(lines) == writer.expected[110:]
    assert src.lost == 111
    src.close()
    writer.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(database: Path, url: str) -> EdgeConfig:
    influx = InfluxConfig(
        enabled=True,
        url=url,
        token=SecretStr("not-checked"),
        organisation=ORG,
        batch_size=250,
        flush_interval_s=0.05,
        retry_min_s=0.05,
        retry_max_s=0.2,
        timeout_s=2,
    )
    return EdgeConfig(hotel_id=HOTEL, data_dir=database.parent, influx=influx)


@pytest.mark.timeout(90)
async def test_stored_lines_survive_a_restart_and_an_outage_and_are_written_once(
    database: Path, tmp_path: Path
) -> None:
    writer = Writer(database)
    # InfluxDB away: the sink keeps failing, the lines stay.
    async with InfluxSink.running(_config(database, f"http://127.0.0.1:{_closed_port()}")) as sink:
        assert sink is not None
        down = sink
        writer.points(6, event_between=True)
        await until(lambda: down.core.status.failures >= 2, 20, "a failed write", every=0.05)
        assert down.source.cursor == 0
    assert writer.stored() == 6
    # Started again, InfluxDB back: every point once, from the stored lines.
    with victoria_metrics(tmp_path / "vm") as vm:
        async with InfluxSink.running(_config(database, vm.url)) as sink:
            assert sink is not None
            up = sink
            last = int(writer.conn.execute("SELECT max(seq) FROM outbox").fetchone()[0])
            await until(lambda: up.source.cursor >= last, 20, "all written", every=0.05)
            assert up.core.status.written == len(writer.expected) + writer.events
        assert writer.stored() == 0

        def arrived() -> bool:
            return len(vm.samples("telemetry_.*")) >= len(writer.expected)

        await until(arrived, 20, "in VictoriaMetrics", every=0.05)
        have = vm.samples("telemetry_.*")
    assert len(have) == len(writer.expected)
    assert all(len(values) == 1 for values in have.values())
    tags = (
        ("device", ENV),
        ("hotel", HOTEL),
        ("kind", "environment_sensor"),
        ("org", ORG),
        ("room", "101"),
    )
    assert have[("telemetry_humidity", tags, NOW + 1)] == [40.5]
    assert have[("telemetry_temperature", tags, NOW + 7)] == [20.1]
    assert _lost(database) == 0
    writer.close()


def _lost(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT lost FROM influx_sink").fetchone()[0])
    finally:
        conn.close()


async def test_a_backlog_from_before_stored_lines_is_written_first_from_the_rows(
    tmp_path: Path,
) -> None:
    # A schema 8 store whose sink is on and behind: its points have no stored lines.
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    db = Database(conn, execute_plugins=False)
    for step in MIGRATIONS[:8]:
        step(db)
    conn.execute("PRAGMA user_version = 8")
    conn.execute(
        "INSERT INTO devices (device_id, room_id, kind, registered, connectivity)"
        " VALUES (?, '101', 'environment_sensor', 1, 'online')",
        (ENV,),
    )
    conn.execute("UPDATE influx_sink SET enabled = 1, cursor = 0")
    series = history.SeriesIndex(conn).id_for(ENV, "temperature")
    history.insert_points(conn, [(series, NOW - 50 + i, 0.5) for i in range(50)], outbox_ts=NOW)
    conn.close()
    old = [f"telemetry,{TAGS} temperature=0.5 {NOW - 50 + i}" for i in range(50)]
    # Upgraded: the backlog first, from the rows, then what is applied with lines.
    conn = connect(path, Synchronous.NORMAL, cache_kib=2048)
    migrate(conn)
    conn.close()
    src = source(path)
    writer = Writer(path)
    writer.points(2)
    assert writer.stored() == 2
    assert telemetry(await read_all(src, 70, commit=True)) == old + writer.expected
    assert writer.stored() == 0
    src.close()
    writer.close()


async def test_a_device_moved_by_the_registry_tool_is_tagged_with_its_new_room(
    database: Path,
) -> None:
    src = source(database)
    writer = Writer(database)
    writer.points(1)  # the writer now knows the device's room as 101
    # `bellhop devices add` moves it, on a connection of its own, and bumps the version.
    with EdgeStore.open(database) as tool:
        device = tool.get_device(ENV)
        assert device is not None
        tool.upsert_device(dataclasses.replace(device, room_id="202"))
        tool.bump_registry_version()
    writer.points(1)
    lines = telemetry(await read_all(src, 1000))
    assert lines[:RUN] == writer.expected[:RUN]
    moved = [text.replace("room=101", "room=202") for text in writer.expected[RUN:]]
    assert lines[RUN:] == moved
    src.close()
    writer.close()


async def test_reads_never_exceed_the_batch_and_resume_mid_run_after_a_restart(
    database: Path,
) -> None:
    src = source(database)
    writer = Writer(database)
    writer.points(5, event_between=True)  # runs of 100 points, an event after each
    assert writer.stored() == 5
    got: list[str] = []
    for _ in range(3):  # 70, 70 and 70 records: the cursor ends inside a run
        entries = await src.read(src.cursor, 70)
        assert sum(e.count for e in entries) == 70
        got.extend(text for e in entries if e.line for text in e.line.split("\n"))
        await src.commit(Batch(tuple(entries)))
    src.close()
    src = source(database)  # restarted: on from its cursor, inside a run
    got.extend(await read_all(src, 70, commit=True))
    assert telemetry(got) == writer.expected  # each point once, in order
    assert len(got) - len(telemetry(got)) == writer.events
    assert writer.stored() == 0
    src.close()
    writer.close()


class _Counted(OutboxSource):
    """The gateway's source, noting the records of each batch it commits (one request)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__(conn, hotel_id=HOTEL, org=ORG)
        self.sizes: list[int] = []

    async def commit(self, batch: Batch) -> None:
        self.sizes.append(batch.size)
        await super().commit(batch)


@pytest.mark.timeout(90)
async def test_a_run_larger_than_batch_size_is_sent_in_batches_of_at_most_batch_size(
    database: Path, tmp_path: Path
) -> None:
    writer = Writer(database)
    src = _Counted(connect(database, Synchronous.NORMAL, cache_kib=2048))
    src.open()
    # Three transactions of 1,000 points: runs four times the batch, an event between.
    writer.points(3, event_between=True, size=1000)
    assert writer.stored() == 3
    with victoria_metrics(tmp_path / "vm") as vm:
        config = _config(database, vm.url)
        assert config.influx.batch_size == 250
        core = SinkCore(
            batch_size=config.influx.batch_size,
            flush_interval_s=config.influx.flush_interval_s,
            retry_min_s=config.influx.retry_min_s,
            retry_max_s=config.influx.retry_max_s,
        )
        client = influx_client.client(config.influx)
        write = ClientWriter(influx_client.write_call(client, config.influx))
        task = asyncio.create_task(run_sink(core, src, write, read_ahead=2))
        try:
            last = int(writer.conn.execute("SELECT max(seq) FROM outbox").fetchone()[0])
            await until(lambda: src.cursor >= last, 20, "all written", every=0.05)
        finally:
            task.cancel()
            await asyncio.wait([task], timeout=5)
            client.close()  # type: ignore[no-untyped-call]

        def arrived() -> bool:
            return len(vm.samples("telemetry_.*")) >= len(writer.expected)

        await until(arrived, 20, "in VictoriaMetrics", every=0.05)
        have = vm.samples("telemetry_.*")
    assert max(src.sizes) <= 250
    assert sum(src.sizes) == len(writer.expected) + writer.events == 3003
    assert len(have) == len(writer.expected)
    assert all(len(values) == 1 for values in have.values())
    assert core.status.written == 3003
    assert _lost(database) == 0
    src.close()
    writer.close()
