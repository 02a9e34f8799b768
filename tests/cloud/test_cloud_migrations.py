"""One migration set gives the same schema as the code on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from bellhop_cloud.db.migrate import current_revision, head_revision
from bellhop_cloud.db.schema import metadata
from bellhop_cloud.relay import Relay
from sqlalchemy import Connection


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_code(relay: Relay) -> None:
    assert await current_revision(relay.store.engine) == head_revision()
    async with relay.store.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []


async def test_migrating_again_is_a_no_op(relay: Relay) -> None:
    await relay.store.migrate()
    assert await current_revision(relay.store.engine) == head_revision()
