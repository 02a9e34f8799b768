"""the bridge: gateway links, telemetry, device events, alerts, desired state, commands, gaps

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(length=40)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gateway_links",
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("last_bulk_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_priority_seq", sa.BigInteger(), nullable=False),
        sa.Column("connected", sa.Boolean(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.String(length=64), nullable=True),
        sa.Column("last_heard_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backlog_events", sa.BigInteger(), nullable=False),
        sa.Column("oldest_unsent_ms", sa.BigInteger(), nullable=True),
        sa.Column("gap_points", sa.BigInteger(), nullable=False),
        sa.Column("gap_events", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"], ["gateways.id"], name=op.f("fk_gateway_links_gateway_id_gateways")
        ),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_gateway_links_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_gateway_links")),
    )
    op.create_index(op.f("ix_gateway_links_hotel_id"), "gateway_links", ["hotel_id"])
    op.create_table(
        "telemetry",
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hotel_id", "device_id", "metric", "ts", name=op.f("pk_telemetry")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "device_events",
        sa.Column("id", SERIAL, nullable=False),
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_device_events_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_device_events")),
    )
    op.create_index("ix_device_events_hotel_id_ts", "device_events", ["hotel_id", "ts"])
    op.create_table(
        "alerts",
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=True),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("raised_at", sa.BigInteger(), nullable=False),
        sa.Column("acknowledged_at", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=200), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("cleared_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_alerts_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("hotel_id", "alert_id", name=op.f("pk_alerts")),
    )
    op.create_index("ix_alerts_hotel_id_raised_at", "alerts", ["hotel_id", "raised_at"])
    op.create_table(
        "desired_states",
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_desired_states_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("hotel_id", "device_id", name=op.f("pk_desired_states")),
    )
    op.create_table(
        "command_results",
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("completed_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_command_results_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("hotel_id", "command_id", name=op.f("pk_command_results")),
    )
    op.create_table(
        "sync_gaps",
        sa.Column("id", SERIAL, nullable=False),
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("gateway_id", ID, nullable=False),
        sa.Column("lane", sa.SmallInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("telemetry_points", sa.BigInteger(), nullable=False),
        sa.Column("other_events", sa.BigInteger(), nullable=False),
        sa.Column("oldest_ms", sa.BigInteger(), nullable=True),
        sa.Column("newest_ms", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_sync_gaps_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_gaps")),
    )
    op.create_index(op.f("ix_sync_gaps_hotel_id"), "sync_gaps", ["hotel_id"])


def downgrade() -> None:
    for table in (
        "sync_gaps",
        "command_results",
        "desired_states",
        "alerts",
        "device_events",
        "telemetry",
        "gateway_links",
    ):
        op.drop_table(table)
