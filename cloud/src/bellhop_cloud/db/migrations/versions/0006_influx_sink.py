"""the InfluxDB sink's journal of what was applied and not written yet, and its state

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID = sa.String(length=40)

# SQLite: a row trigger each, skipped at once while the sink is off.
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER influx_journal_points AFTER INSERT ON telemetry
    WHEN (SELECT enabled FROM influx_sink WHERE id = 1)
    BEGIN
        INSERT INTO influx_journal (hotel_id, device_id, metric, ts, applied_ms)
        VALUES (new.hotel_id, new.device_id, new.metric, new.ts,
                CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
    END
    """,
    """
    CREATE TRIGGER influx_journal_events AFTER INSERT ON device_events
    WHEN (SELECT enabled FROM influx_sink WHERE id = 1)
    BEGIN
        INSERT INTO influx_journal (hotel_id, device_id, ts, event_id, applied_ms)
        VALUES (new.hotel_id, new.device_id, new.ts, new.id,
                CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
    END
    """,
)
# PostgreSQL: one statement trigger per insert statement, reading its new rows as a
# table (a row trigger would cost as much per point as the insert itself).
_POSTGRES_TRIGGERS = (
    """
    CREATE FUNCTION influx_journal_points() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT enabled FROM influx_sink WHERE id = 1) THEN
            INSERT INTO influx_journal (hotel_id, device_id, metric, ts, applied_ms)
            SELECT hotel_id, device_id, metric, ts,
                CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT) FROM new_rows;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER influx_journal_points AFTER INSERT ON telemetry
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION influx_journal_points()
    """,
    """
    CREATE FUNCTION influx_journal_events() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF (SELECT enabled FROM influx_sink WHERE id = 1) THEN
            INSERT INTO influx_journal (hotel_id, device_id, ts, event_id, applied_ms)
            SELECT hotel_id, device_id, ts, id,
                CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT) FROM new_rows;
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER influx_journal_events AFTER INSERT ON device_events
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION influx_journal_events()
    """,
)


def upgrade() -> None:
    op.create_table(
        "influx_journal",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=True),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("applied_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_influx_journal")),
    )
    op.create_table(
        "influx_sink",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("written", sa.BigInteger(), nullable=False),
        sa.Column("lost", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_influx_sink")),
    )
    op.execute("INSERT INTO influx_sink (id, enabled, written, lost) VALUES (1, false, 0, 0)")
    postgres = op.get_bind().dialect.name == "postgresql"
    for ddl in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        op.execute(ddl)


def downgrade() -> None:
    for trigger, table in (
        ("influx_journal_points", "telemetry"),
        ("influx_journal_events", "device_events"),
    ):
        if op.get_bind().dialect.name == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.drop_table("influx_sink")
    op.drop_table("influx_journal")
