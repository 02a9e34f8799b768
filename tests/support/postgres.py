"""The machine's PostgreSQL for tests: where it is, and a missing one's verdict."""

from __future__ import annotations

import os
from typing import Final

import asyncpg  # type: ignore[import-untyped]
import pytest

__all__ = ["PG_ADMIN_DB", "PG_HOST", "PG_PORT", "PG_USER", "admin", "require_postgres", "url"]

PG_HOST: Final = os.environ.get("BELLHOP_TEST_PG_HOST", "127.0.0.1")
PG_PORT: Final = int(os.environ.get("BELLHOP_TEST_PG_PORT", "5432"))
PG_USER: Final = os.environ.get("BELLHOP_TEST_PG_USER", "postgres")
PG_ADMIN_DB: Final = os.environ.get("BELLHOP_TEST_PG_DB", "test")


def url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def require_postgres(reason: str) -> None:
    """With CI=true a missing PostgreSQL fails the test; elsewhere it skips."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT} ({reason})")


async def admin(statement: str) -> None:
    """Run one statement on the admin database (CREATE or DROP DATABASE)."""
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB, timeout=5
    )
    try:
        await conn.execute(statement, timeout=30)
    finally:
        await conn.close()
