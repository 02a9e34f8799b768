"""alert notifications: each hotel's policy, the notifications queued, every attempt

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

ID = sa.String(length=40)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notify_policies",
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_notify_policies_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("hotel_id", name=op.f("pk_notify_policies")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", SERIAL, nullable=False),
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("alert_id", sa.String(length=64), nullable=False),
        sa.Column("transition", sa.String(length=16), nullable=False),
        sa.Column("contact_id", sa.String(length=40), nullable=False),
        sa.Column("channel_id", sa.String(length=40), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_ms", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_notifications_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "hotel_id",
            "alert_id",
            "transition",
            "contact_id",
            "channel_id",
            name=op.f("uq_notifications_hotel_id_alert_id_transition_contact_id_channel_id"),
        ),
    )
    op.create_index(
        op.f("ix_notifications_state_due_ms"), "notifications", ["state", "due_ms"], unique=False
    )
    op.create_table(
        "notify_attempts",
        sa.Column("id", SERIAL, nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notify_attempts_notification_id_notifications"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_attempts")),
    )
    op.create_index(
        op.f("ix_notify_attempts_hotel_id_id"), "notify_attempts", ["hotel_id", "id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_notify_attempts_hotel_id_id"), table_name="notify_attempts")
    op.drop_table("notify_attempts")
    op.drop_index(op.f("ix_notifications_state_due_ms"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("notify_policies")
