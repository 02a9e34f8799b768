"""devices.json_head: each device as API JSON, written by the database

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from bellhop_cloud.db.schema import DeviceJsonHead

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Immutable because their inputs are fixed: text, and a time rendered in UTC
# with a pattern that no setting changes. Output as orjson writes it: six
# fraction digits, none on a whole second.
POSTGRES_FUNCTIONS = [
    """CREATE FUNCTION bellhop_json_text(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT coalesce(to_json(value)::text, 'null') $$""",
    """CREATE FUNCTION bellhop_json_utc(moment timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN moment IS NULL THEN 'null' ELSE '"'
        || to_char(moment AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN date_trunc('second', moment AT TIME ZONE 'UTC') = moment AT TIME ZONE 'UTC'
            THEN '' ELSE to_char(moment AT TIME ZONE 'UTC', '.US') END
        || 'Z"' END $$""",
]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        for statement in POSTGRES_FUNCTIONS:
            op.execute(statement)
    # SQLite adds a stored generated column only by rebuilding the table.
    with op.batch_alter_table("devices", recreate="always" if sqlite else "auto") as batch_op:
        batch_op.add_column(
            sa.Column(
                "json_head",
                sa.Text(),
                sa.Computed(DeviceJsonHead(), persisted=True),
                nullable=False,
            )
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("devices", recreate="always" if sqlite else "auto") as batch_op:
        batch_op.drop_column("json_head")
    if not sqlite:
        op.execute("DROP FUNCTION bellhop_json_utc(timestamptz)")
        op.execute("DROP FUNCTION bellhop_json_text(text)")
