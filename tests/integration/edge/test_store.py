"""The edge store on real SQLite files: schema, registry and state, outbox, commands,
and what survives reopening."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
from pathlib import Path

import pytest
from bellhop.common.v1 import common_pb2
from bellhop_edge.config import RetentionConfig
from bellhop_edge.core.model import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
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
    PutAlert,
    PutDesired,
    PutDevice,
    PutEvent,
    PutLastSeen,
    PutMessage,
    PutReported,
)
from bellhop_edge.errors import (
    InvalidAckError,
    SchemaVersionError,
    StoreError,
)
from bellhop_edge.store import SCHEMA_VERSION, EdgeStore, OutboxKind, StoreWriter
from bellhop_edge.store.schema import MIGRATIONS
from sqlite_utils import Database

from tests.integration.edge.store_support import T0, command, points


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
