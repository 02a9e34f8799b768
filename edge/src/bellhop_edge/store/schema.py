"""The database's shape: tables, forward migrations, connections, transactions.

`PRAGMA user_version` holds the schema version; `migrate` upgrades an older
database in one transaction and refuses one written by a newer gateway.
Connections run in WAL mode; `Synchronous` states what a commit survives
(docs/edge-store.md, "Durability").
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Final

from sqlite_utils import Database

from bellhop_edge.errors import SchemaVersionError, StoreError
from bellhop_edge.store import history, influx_lines

__all__ = [
    "BUSY_TIMEOUT_MS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Synchronous",
    "connect",
    "limit_size",
    "migrate",
    "transaction",
]

BUSY_TIMEOUT_MS: Final = 5000


class Synchronous(StrEnum):
    """SQLite `synchronous` in WAL mode; see docs/edge-store.md for the trade-off."""

    NORMAL = "NORMAL"
    FULL = "FULL"


def _schema_v1(db: Database) -> None:
    db.table("rooms").create(
        {"room_id": str, "name": str, "floor": int},
        pk="room_id",
        not_null={"name", "floor"},
        strict=True,
    )
    db.table("devices").create(
        {
            "device_id": str,
            "room_id": str,
            "kind": str,
            "registered": int,
            "connectivity": str,
            "first_seen": int,
            "last_seen": int,
            "firmware": str,
        },
        pk="device_id",
        not_null={"registered", "connectivity"},
        strict=True,
    )
    db.table("devices").create_index(["room_id"])
    for name, extra in (("reported_state", {}), ("desired_state", {"updated_by": str})):
        db.table(name).create(
            {"device_id": str, "version": int, "values_json": str, "updated_at": int, **extra},
            pk="device_id",
            not_null={"version", "values_json", "updated_at", *extra},
            strict=True,
        )
    db.table("events").create(
        {"event_id": int, "device_id": str, "kind": str, "ts": int, "data": str},
        pk="event_id",
        not_null={"device_id", "kind", "ts", "data"},
        strict=True,
    )
    db.table("events").create_index(["device_id", "ts"])
    db.table("events").create_index(["ts"])
    db.table("alerts").create(
        {
            "alert_id": str,
            "kind": str,
            "severity": str,
            "state": str,
            "device_id": str,
            "room_id": str,
            "message": str,
            "raised_at": int,
            "acknowledged_at": int,
            "acknowledged_by": str,
            "note": str,
            "cleared_at": int,
        },
        pk="alert_id",
        not_null={"kind", "severity", "state", "device_id", "message", "raised_at"},
        strict=True,
    )
    db.table("alerts").create_index(["state"])
    db.table("alerts").create_index(["raised_at"])
    db.table("commands").create(
        {
            "command_id": str,
            "device_id": str,
            "name": str,
            "params": str,
            "expires_at": int,
            "requested_by": str,
            "status": str,
            "result": str,
            "error": str,
            "created_at": int,
            "completed_at": int,
        },
        pk="command_id",
        not_null={
            "device_id",
            "name",
            "params",
            "expires_at",
            "requested_by",
            "status",
            "created_at",
        },
        strict=True,
    )
    db.table("commands").create_index(["created_at"])
    # sqlite-utils cannot express AUTOINCREMENT or WITHOUT ROWID.
    # AUTOINCREMENT: a sequence is never reused, even after every row was pruned.
    db.execute(
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            ts INTEGER NOT NULL,
            kind INTEGER NOT NULL,
            series_id INTEGER,
            point_ts INTEGER,
            value REAL,
            payload BLOB
        ) STRICT
        """
    )
    db.execute(
        """
        CREATE TABLE outbox_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            last_acked_seq INTEGER NOT NULL
        ) STRICT
        """
    )
    db.execute("INSERT INTO outbox_state (id, last_acked_seq) VALUES (1, 0)")
    for ddl in history.HISTORY_DDL:
        db.execute(ddl)


def _schema_v2(db: Database) -> None:
    """Stage new telemetry in an append-only table (see history.py)."""
    db.execute(history.RECENT_DDL)
    # Points that v1 wrote straight into `telemetry` stay there: nothing to move.


def _schema_v3(db: Database) -> None:
    """A registry version that tools bump so a running gateway reloads rooms and devices."""
    db.execute(
        "CREATE TABLE registry_state (id INTEGER PRIMARY KEY CHECK (id = 0),"
        " version INTEGER NOT NULL) STRICT"
    )
    db.execute("INSERT INTO registry_state (id, version) VALUES (0, 0)")


def _schema_v4(db: Database) -> None:
    """Replay receipts: the keys of the QoS 1 messages committed last (core/replay.py)."""
    db.execute("CREATE TABLE receipts (id INTEGER PRIMARY KEY, key INTEGER NOT NULL) STRICT")


def _schema_v5(db: Database) -> None:
    """Bridge lanes: alert changes and device events overtake a telemetry backlog."""
    db.execute("ALTER TABLE outbox ADD COLUMN lane INTEGER NOT NULL DEFAULT 1")
    db.execute("UPDATE outbox SET lane = 2 WHERE kind IN (5, 6)")  # device events, alerts
    db.execute("CREATE INDEX outbox_priority ON outbox (seq) WHERE lane = 2")
    db.execute(
        "ALTER TABLE outbox_state ADD COLUMN last_acked_priority_seq INTEGER NOT NULL DEFAULT 0"
    )
    # One acknowledgement covered every kind before: it covers both lanes now.
    db.execute("UPDATE outbox_state SET last_acked_priority_seq = last_acked_seq")


def _schema_v6(db: Database) -> None:
    """Desired state keeps who set each field and when, and how a cloud change merged."""
    for column in ("fields_json", "outcomes_json", "change_id"):
        db.execute(f"ALTER TABLE desired_state ADD COLUMN {column} TEXT")


def _schema_v7(db: Database) -> None:
    """The InfluxDB sink's durable position in the outbox, and what it lost (docs/influx.md).

    The sink is off until a gateway's config turns it on (`enabled`). From then
    a telemetry point or device event that retention deletes from the outbox
    before the sink wrote it is counted by the trigger, in the same
    transaction as the delete: a loss is never silent, whoever deletes.
    """
    db.execute(
        "CREATE TABLE influx_sink (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " enabled INTEGER NOT NULL, cursor INTEGER NOT NULL, lost INTEGER NOT NULL) STRICT"
    )
    db.execute("INSERT INTO influx_sink (id, enabled, cursor, lost) VALUES (1, 0, 0, 0)")
    db.execute(
        """
        CREATE TRIGGER influx_sink_lost AFTER DELETE ON outbox
        WHEN old.kind IN (3, 5)
            AND old.seq > (SELECT cursor FROM influx_sink WHERE id = 1 AND enabled)
        BEGIN
            UPDATE influx_sink SET lost = lost + 1 WHERE id = 1;
        END
        """
    )


def _schema_v8(db: Database) -> None:
    """The local notification channel's queue (docs/notifications.md, "On site").

    While `[notify]` is on (`notify_state.enabled`), the trigger records each alert
    inserted as raised in `notify_inbox`, in the writer's own transaction: an alert
    committed is an alert to notify, whatever dies next. The notifier turns each
    inbox row into one `notifications` row per channel (unique per alert transition
    and channel) and records every attempt in `notify_attempts` before it sends.
    An inbox row stays once turned (`queued`), so that a raised alert written again
    is not queued twice.
    """
    db.execute(
        "CREATE TABLE notify_state (id INTEGER PRIMARY KEY CHECK (id = 1),"
        " enabled INTEGER NOT NULL) STRICT"
    )
    db.execute("INSERT INTO notify_state (id, enabled) VALUES (1, 0)")
    db.execute(
        "CREATE TABLE notify_inbox (alert_id TEXT NOT NULL, transition TEXT NOT NULL,"
        " queued INTEGER NOT NULL, created_ms INTEGER NOT NULL,"
        " PRIMARY KEY (alert_id, transition)) STRICT"
    )
    db.execute("CREATE INDEX notify_inbox_new ON notify_inbox (alert_id) WHERE NOT queued")
    db.execute(
        """
        CREATE TRIGGER notify_on_raise AFTER INSERT ON alerts
        WHEN new.state = 'raised' AND (SELECT enabled FROM notify_state WHERE id = 1)
        BEGIN
            INSERT OR IGNORE INTO notify_inbox (alert_id, transition, queued, created_ms)
            VALUES (new.alert_id, 'raised', 0, new.raised_at);
        END
        """
    )
    db.execute(
        """
        CREATE TABLE notifications (
            id INTEGER PRIMARY KEY,
            alert_id TEXT NOT NULL,
            transition TEXT NOT NULL,
            contact_id TEXT NOT NULL,
            channel_id TEXT NOT NULL,
            step INTEGER NOT NULL,
            position INTEGER NOT NULL,
            state TEXT NOT NULL,
            due_ms INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            lease_ms INTEGER,
            created_ms INTEGER NOT NULL,
            UNIQUE (alert_id, transition, contact_id, channel_id)
        ) STRICT
        """
    )
    db.execute("CREATE INDEX notifications_state_due ON notifications (state, due_ms)")
    db.execute(
        "CREATE TABLE notify_attempts (notification_id INTEGER NOT NULL,"
        " number INTEGER NOT NULL, started_ms INTEGER NOT NULL, finished_ms INTEGER,"
        " outcome TEXT NOT NULL, error TEXT, PRIMARY KEY (notification_id, number)) STRICT"
    )


def _schema_v9(db: Database) -> None:
    """Line protocol stored with applied telemetry while the InfluxDB sink is on
    (store/influx_lines.py, docs/influx.md)."""
    for ddl in influx_lines.SCHEMA_V9:
        db.execute(ddl)


# Forward migrations: entry i upgrades a database at user_version i to i + 1.
MIGRATIONS: Final[tuple[Callable[[Database], None], ...]] = (
    _schema_v1,
    _schema_v2,
    _schema_v3,
    _schema_v4,
    _schema_v5,
    _schema_v6,
    _schema_v7,
    _schema_v8,
    _schema_v9,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def connect(path: Path, synchronous: Synchronous, *, cache_kib: int) -> sqlite3.Connection:
    # isolation_level=None: this module issues BEGIN/COMMIT itself.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"{path}: cannot use WAL journal mode (got {mode!r})")
    # Synchronous(...) also admits the plain "NORMAL"/"FULL" of a config file.
    conn.execute(f"PRAGMA synchronous = {Synchronous(synchronous).value}")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # A WAL that grew during a burst is truncated back after checkpoints.
    conn.execute("PRAGMA journal_size_limit = 67108864")
    return conn


def limit_size(conn: sqlite3.Connection, max_bytes: int) -> None:
    """Writes past `max_bytes` fail with SQLITE_FULL, as on a full disk.

    A database already larger keeps its size: it cannot grow, and pages that
    retention frees are reused.
    """
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = max(1, max_bytes // page_size)
    conn.execute(f"PRAGMA max_page_count = {pages}")


def migrate(conn: sqlite3.Connection) -> None:
    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"database schema version {version} is newer than this gateway's "
                f"{SCHEMA_VERSION}; upgrade the gateway"
            )
        for step in MIGRATIONS[version:]:
            step(db)
        if version != SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        # Some errors (disk full, I/O) have already rolled the transaction back.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
