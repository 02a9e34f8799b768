"""Alembic environment: runs on a connection handed over by `bellhop_cloud.db.migrate`."""

from __future__ import annotations

from alembic import context
from bellhop_cloud.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
