"""The relay's database: one async engine, short transactions, SQLite or PostgreSQL.

    async with store.read() as conn: ...          # queries
    async with store.write() as conn: ...         # one transaction, statement by statement
    value = await store.run(fn, *args)            # one transaction: fn(connection, *args)

`run` is for the hot paths (a remote command, a bridge batch). On SQLite each
statement awaited through aiosqlite is two or three hops to its thread and back,
and a remote command's transactions took ~60 of them; `run` executes the whole
transaction in the store's own thread, one hop, on a synchronous connection of the
same database. On PostgreSQL it runs `fn` in an ordinary transaction
(`AsyncConnection.run_sync`): the same round trips as statement by statement.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db import migrate
from bellhop_cloud.errors import StoreUnavailable

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A random id that names its kind, e.g. `htl_3f2a9c0e1b7d4a55`."""
    return f"{prefix}_{secrets.token_hex(8)}"


T = TypeVar("T")
P = ParamSpec("P")


class Store:
    """Owns the engine. `read()` for queries, `write()` and `run()` for one transaction.

    SQLite allows one writer at a time; writes (both kinds) are serialised
    in-process so that they queue instead of failing with "database is locked".
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        timeout_s: float = 5.0,
        relaxed_engine: AsyncEngine | None = None,
    ) -> None:
        self.engine = engine
        # PostgreSQL: connections whose commits do not wait for the disk (`run_relaxed`).
        self._relaxed = relaxed_engine
        # `run_alone`: the same connections in autocommit (set on the client, no round trip).
        self._alone = (
            None
            if relaxed_engine is None
            else relaxed_engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        # PostgreSQL reads in autocommit: a read is its statements' round trips alone,
        # without a BEGIN before and a ROLLBACK when the connection goes back to the
        # pool. A read sees what each statement sees under READ COMMITTED either way.
        self._reads = (
            engine if self.is_sqlite else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self._sync: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        if self.is_sqlite:
            # `run`'s connection: the same file through the plain driver, used by one
            # thread only, with the same settings as the async engine's.
            self._sync = sa.create_engine(
                engine.url.set(drivername="sqlite"),
                pool_size=1,
                max_overflow=0,
                connect_args={"timeout": timeout_s, "check_same_thread": False},
                hide_parameters=True,
            )
            event.listen(self._sync, "connect", _sqlite_pragmas)
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="relay-store")
        # Connections out of the pools. `close` waits for them: disposing an engine leaves
        # a checked-out connection open, and its socket would be closed by the garbage
        # collector whenever the task still holding it lets go.
        self._in_use = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._close_wait_s = timeout_s

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
            return cls(engine, timeout_s=config.db_timeout_s)
        # Connecting and every statement are bounded, so a stuck database
        # becomes an error instead of a request that never ends.
        connect_args: dict[str, Any] = {
            "timeout": config.db_timeout_s,
            "command_timeout": config.db_timeout_s,
        }
        # Commits wait for the disk unless a transaction says otherwise (`run_relaxed`),
        # whatever the server's or the role's default: `flushed` and every durability
        # promise rest on it.
        connect_args["server_settings"] = {"synchronous_commit": "on"}
        if config.database_schema:
            connect_args["server_settings"]["search_path"] = config.database_schema
        engine = create_async_engine(
            config.database_url,
            pool_size=config.db_pool_size,
            max_overflow=config.db_pool_size,
            pool_timeout=config.db_timeout_s,
            connect_args=connect_args,
            hide_parameters=True,
        )
        # A few connections set for `run_relaxed` when they open: the hot relaxed
        # transactions (a gateway's direct answer, sent marks) then need no SET LOCAL,
        # a round trip each on the path of a remote command.
        settings = {**connect_args.get("server_settings", {}), "synchronous_commit": "off"}
        relaxed_engine = create_async_engine(
            config.database_url,
            pool_size=max(1, config.db_pool_size // 4),
            max_overflow=config.db_pool_size,
            pool_timeout=config.db_timeout_s,
            connect_args={**connect_args, "server_settings": settings},
            hide_parameters=True,
        )
        event.listen(relaxed_engine.sync_engine, "connect", _relaxed_connection)
        return cls(engine, timeout_s=config.db_timeout_s, relaxed_engine=relaxed_engine)

    async def migrate(self) -> None:
        await migrate.upgrade(self.engine)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries (autocommit on PostgreSQL: never write through it)."""
        self._enter()
        try:
            async with self._reads.connect() as connection:
                yield connection
        finally:
            self._leave()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed when the block exits cleanly."""
        self._enter()
        try:
            if self._write_lock is None:
                async with self.engine.begin() as connection:
                    yield connection
                return
            async with self._write_lock, self.engine.begin() as connection:
                yield connection
        finally:
            self._leave()

    async def run(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(connection, *args, **kwargs)` in one transaction, committed when it returns
        (rolled back if it raises); its value is returned. `fn` runs in the store's
        thread on SQLite: it must not touch the event loop's objects (see `inline` for
        the async helpers of other modules that only execute statements)."""
        self._enter()
        try:
            if self._thread is None:
                async with self.engine.begin() as connection:
                    return await connection.run_sync(fn, *args, **kwargs)
            assert self._write_lock is not None
            work = functools.partial(self._transaction, fn, *args, **kwargs)
            async with self._write_lock:
                done = asyncio.get_running_loop().run_in_executor(self._thread, work)
                try:
                    return await asyncio.shield(done)
                except asyncio.CancelledError:
                    # The thread finishes the transaction whatever happens here: the next
                    # writer waits for its end rather than for the database's lock.
                    await asyncio.wait([done])
                    raise
        finally:
            self._leave()

    async def run_relaxed(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`run` for a transaction whose commit need not wait for the disk (`relaxed`
        says when that is right); on PostgreSQL on a connection opened so, one round trip
        fewer than `relaxed` inside `run`. `fn` still calls `relaxed`."""
        if self._relaxed is None:
            return await self.run(fn, *args, **kwargs)
        self._enter()
        try:
            async with self._relaxed.begin() as connection:
                return await connection.run_sync(fn, *args, **kwargs)
        finally:
            self._leave()

    async def run_alone(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(connection, *args, **kwargs)` for work whose every statement stands alone: on
        PostgreSQL in autocommit on a connection of `run_relaxed`'s, so that each statement
        is a transaction of its own (atomic as any), committed without waiting for the
        disk, in one round trip (no BEGIN, no COMMIT). Elsewhere `run_relaxed`."""
        if self._alone is None:
            return await self.run_relaxed(fn, *args, **kwargs)
        self._enter()
        try:
            async with self._alone.connect() as connection:
                return await connection.run_sync(fn, *args, **kwargs)
        finally:
            self._leave()

    async def flushed(self) -> None:
        """Return once every commit made before the call is on the disk: for a transaction
        committed by `run_relaxed` that must be durable before someone is told of it
        (a remote command's audit entry, docs/remote-control.md). PostgreSQL writes its
        log in order, so a commit that waits for the disk flushes every commit before
        it; this is one statement in autocommit whose commit writes a record (an empty
        transactional logical message: a commit that wrote nothing to the log does not
        wait) and waits. SQLite: nothing to wait for (its commits never wait, see
        `_sqlite_pragmas`)."""
        if self.is_sqlite:
            return
        self._enter()
        try:
            async with self._reads.connect() as connection:
                await connection.execute(_FLUSH)
        finally:
            self._leave()

    def _transaction(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        assert self._sync is not None
        with self._sync.begin() as connection:
            return fn(connection, *args, **kwargs)

    async def ping(self, within_s: float) -> None:
        """Raise StoreUnavailable unless the database answers within `within_s` seconds."""
        self._enter()
        try:
            async with asyncio.timeout(within_s), self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except (TimeoutError, SQLAlchemyError, OSError) as exc:
            raise StoreUnavailable(f"database did not answer: {type(exc).__name__}") from exc
        finally:
            self._leave()

    def _enter(self) -> None:
        if self._closed:
            raise StoreUnavailable("the store is closed")
        self._in_use += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._in_use -= 1
        if self._in_use == 0:
            self._idle.set()

    async def close(self) -> None:
        """Refuse new work, wait (bounded) for the work in flight, then close every
        connection. Work still running after the wait is a task its owner did not
        stop: it is logged, and its connection is left to that task."""
        self._closed = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._close_wait_s):
                await self._idle.wait()
        if self._in_use:
            log.warning("store closed with %d transactions still running", self._in_use)
        try:
            await self.engine.dispose()
            if self._relaxed is not None:
                await self._relaxed.dispose()
        finally:
            if self._thread is not None and self._sync is not None:
                await asyncio.get_running_loop().run_in_executor(self._thread, self._sync.dispose)
                self._thread.shutdown(wait=False)


def relaxed(connection: Connection) -> None:
    """This transaction's commit does not wait for its log to reach the disk (PostgreSQL;
    SQLite's commits never do here): for writes that a later, durable one repeats or
    makes moot. PostgreSQL writes its log in order, so a later commit that does wait
    makes this one durable too; a crash before that loses it, never half of it."""
    if connection.dialect.name == "postgresql" and not connection.info.get(_RELAXED):
        connection.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))


# `Store.flushed`: a log record in a transaction of its own, so that its commit waits for
# the disk (PostgreSQL flushes at commit only a transaction that wrote to the log).
_FLUSH = sa.text("SELECT pg_logical_emit_message(true, 'bellhop.flush', '')")

_RELAXED = "bellhop_relaxed"  # a connection's info key: it was opened relaxed


def _relaxed_connection(_dbapi_connection: Any, record: Any) -> None:
    record.info[_RELAXED] = True


class _Inline:
    """A synchronous connection in the clothes of an `AsyncConnection`, for `inline`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return self._connection.execute(statement, parameters)


def inline(
    connection: Connection,
    helper: Callable[Concatenate[AsyncConnection, P], Coroutine[Any, Any, T]],
) -> Callable[P, T]:
    """`helper` (an async function of another module that only executes statements on the
    connection it is given, e.g. `audit.record`) run on `connection` inside `Store.run`:
    its coroutine never waits for anything there, so it completes in one step."""

    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        coroutine = helper(cast("AsyncConnection", _Inline(connection)), *args, **kwargs)
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return cast("T", stop.value)
        coroutine.close()
        raise RuntimeError(f"{helper.__qualname__} waited for something: not a statement")

    return call


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
