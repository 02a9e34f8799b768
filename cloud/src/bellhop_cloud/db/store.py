"""The relay's database: one async engine, short transactions, SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db import migrate
from bellhop_cloud.errors import StoreUnavailable


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random id that names its kind, e.g. `htl_3f2a9c0e1b7d4a55`."""
    return f"{prefix}_{secrets.token_hex(8)}"


class Store:
    """Owns the engine. `read()` for queries, `write()` for one transaction.

    SQLite allows one writer at a time; writes are serialised in-process so
    that they queue instead of failing with "database is locked".
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @classmethod
    def open(cls, config: RelayConfig) -> Store:
        # Errors never carry bound parameters: they are what users typed.
        if config.is_sqlite:
            engine = create_async_engine(
                config.database_url,
                pool_size=config.db_pool_size,
                max_overflow=0,
                pool_timeout=config.db_timeout_s,
                connect_args={"timeout": config.db_timeout_s},
                hide_parameters=True,
            )
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            # Connecting and every statement are bounded, so a stuck database
            # becomes an error instead of a request that never ends.
            connect_args: dict[str, Any] = {
                "timeout": config.db_timeout_s,
                "command_timeout": config.db_timeout_s,
            }
            if config.database_schema:
                connect_args["server_settings"] = {"search_path": config.database_schema}
            engine = create_async_engine(
                config.database_url,
                pool_size=config.db_pool_size,
                max_overflow=config.db_pool_size,
                pool_timeout=config.db_timeout_s,
                connect_args=connect_args,
                hide_parameters=True,
            )
        return cls(engine)

    async def migrate(self) -> None:
        await migrate.upgrade(self.engine)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed when the block exits cleanly."""
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock, self.engine.begin() as connection:
            yield connection

    async def ping(self, within_s: float) -> None:
        """Raise StoreUnavailable unless the database answers within `within_s` seconds."""
        try:
            async with asyncio.timeout(within_s), self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database did not answer: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the writer; NORMAL sync survives a process
    # crash (the relay's state is re-synced from edges after a power loss).
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # The bridge writes history in bulk: a cache that holds the hot index pages,
    # and checkpoints every ~40 MiB of WAL rather than on nearly every commit.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.close()
