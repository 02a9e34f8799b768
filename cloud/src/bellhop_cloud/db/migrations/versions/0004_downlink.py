"""the downlink (remote commands, alert acknowledgements, desired state on their way to a
gateway) and desired state's per-field intents and merge outcomes

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = sa.String(length=40)


def upgrade() -> None:
    op.create_table(
        "downlink",
        sa.Column("hotel_id", ID, nullable=False),
        sa.Column("item_id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("requested_by", ID, nullable=False),
        sa.Column("requested_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("sent_at", sa.BigInteger(), nullable=True),
        sa.Column("sends", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hotel_id"], ["hotels.id"], name=op.f("fk_downlink_hotel_id_hotels")
        ),
        sa.PrimaryKeyConstraint("hotel_id", "item_id", name=op.f("pk_downlink")),
    )
    op.create_index("ix_downlink_state_hotel_id", "downlink", ["state", "hotel_id"])
    with op.batch_alter_table("desired_states") as table:
        table.add_column(sa.Column("fields", sa.JSON(), nullable=True))
        table.add_column(sa.Column("outcomes", sa.JSON(), nullable=True))
        table.add_column(sa.Column("change_id", sa.String(length=80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("desired_states") as table:
        for column in ("change_id", "outcomes", "fields"):
            table.drop_column(column)
    op.drop_index("ix_downlink_state_hotel_id", table_name="downlink")
    op.drop_table("downlink")
