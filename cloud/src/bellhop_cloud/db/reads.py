"""The hot read path: device pages rendered to JSON by the database.

A page of devices is the relay's most frequent read. Through SQLAlchemy's
async layer (and, for SQLite, a thread hop per call) a page cost about
0.5 ms of CPU before encoding; these readers skip that layer:

- SQLite: one read-only `sqlite3` connection used inline on the event loop.
  A page is an index range scan on a WAL database that takes well under
  a millisecond, less than handing it to a thread and back.
- PostgreSQL: an asyncpg pool with prepared statements.

A page comes back as the JSON array text of its devices, which the route
splices into the body: no device becomes a dict. Each device's JSON up to
`stale` is a stored generated column that the database writes with the row
(`devices.json_head`, db/schema.py); the query appends `stale`, which
depends on the time of the read, and Python joins the page's rows. Rendering
every row at read time in SQL cost more than building dicts in Python, and
joining them in SQL (`string_agg`) nearly doubled PostgreSQL's CPU for the query
(docs/benchmarks.md, "Cloud API").

The single-device read builds a dict in Python; the tests check that both
give the same bytes. Only constant SQL fragments and placeholders are
interpolated into the queries. Everything else (and every write) goes
through SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from sqlalchemy.engine import URL, make_url

from bellhop_cloud.config import RelayConfig
from bellhop_cloud.errors import StoreUnavailable

Device = dict[str, Any]  # the keys of api.schemas.DeviceOut


@dataclass(frozen=True, slots=True)
class DevicePageJson:
    """A page of devices as the JSON array text of its items."""

    items: str
    count: int
    last_id: str | None  # the last device's id, None on an empty page


class DeviceReader(Protocol):
    async def page(
        self,
        hotel_id: str,
        *,
        visible: frozenset[str] | None,
        room_id: str | None,
        after: str | None,
        limit: int,
        stale_before: datetime,
    ) -> DevicePageJson:
        """Devices ordered by id; `visible=None` means every room."""

    async def one(self, hotel_id: str, device_id: str, *, stale_before: datetime) -> Device | None:
        """One device, or None."""

    async def close(self) -> None: ...


def open_device_reader(config: RelayConfig) -> DeviceReader:
    url = make_url(config.database_url)
    if config.is_sqlite:
        return SqliteDeviceReader(url.database or ":memory:", timeout_s=config.db_timeout_s)
    return PostgresDeviceReader(
        url,
        schema=config.database_schema,
        pool_size=config.db_pool_size,
        timeout_s=config.db_timeout_s,
    )


_COLUMNS = "device_id, room_id, kind, firmware, online, state, last_seen"
INLINE_BUSY_TIMEOUT_S = 0.5

# A page's rows: each device's stored JSON completed with its `stale`. SQLite
# keeps naive UTC text (db/schema.UtcDateTime) that sorts as time does, so
# staleness there is a text comparison.
_PAGE_JSON = (
    "json_head || CASE WHEN last_seen IS NULL OR last_seen < {cutoff}"
    " THEN 'true}}' ELSE 'false}}' END"
)


def _joined(rows: list[Any]) -> DevicePageJson:
    # The next cursor's id comes from the last device's own JSON: cheaper than
    # reading every row's id as a second column.
    last_id = orjson.loads(rows[-1][0])["device_id"] if rows else None
    return DevicePageJson(f"[{','.join([row[0] for row in rows])}]", len(rows), last_id)


class SqliteDeviceReader:
    def __init__(self, path: str, *, timeout_s: float) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            # WAL readers almost never wait; when they must, the loop waits with
            # them, so the wait is short and a timeout becomes a 503.
            connection = sqlite3.connect(
                self._path,
                timeout=min(self._timeout_s, INLINE_BUSY_TIMEOUT_S),
                check_same_thread=False,
            )
            connection.execute("PRAGMA query_only=1")
            self._connection = connection
        return self._connection

    async def page(
        self,
        hotel_id: str,
        *,
        visible: frozenset[str] | None,
        room_id: str | None,
        after: str | None,
        limit: int,
        stale_before: datetime,
    ) -> DevicePageJson:
        where = ["hotel_id = ?"]
        args: list[Any] = [_sqlite_time(stale_before), hotel_id]
        if visible is not None:
            where.append(f"room_id IN ({','.join('?' * len(visible))})")
            args.extend(sorted(visible))
        if room_id is not None:
            where.append("room_id = ?")
            args.append(room_id)
        if after is not None:
            where.append("device_id > ?")
            args.append(after)
        args.append(limit)
        sql = (
            f"SELECT {_PAGE_JSON.format(cutoff='?')} FROM devices"  # noqa: S608
            f" WHERE {' AND '.join(where)} ORDER BY device_id LIMIT ?"
        )
        try:
            rows = self._connect().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"device read failed: {type(exc).__name__}") from exc
        return _joined(rows)

    async def one(self, hotel_id: str, device_id: str, *, stale_before: datetime) -> Device | None:
        sql = f"SELECT {_COLUMNS} FROM devices WHERE hotel_id = ? AND device_id = ?"  # noqa: S608
        try:
            row = self._connect().execute(sql, [hotel_id, device_id]).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"device read failed: {type(exc).__name__}") from exc
        if row is None:
            return None
        device_id, room, kind, firmware, online, state, seen = row
        return {
            "device_id": device_id,
            "room_id": room,
            "kind": kind,
            "firmware": firmware,
            "online": bool(online),
            "state": orjson.Fragment(state),
            "last_seen": f"{seen[:10]}T{seen[11:]}Z" if seen else None,
            "stale": seen is None or seen < _sqlite_time(stale_before),
        }

    async def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _sqlite_time(moment: datetime) -> str:
    """The text form SQLite stores a time in (db/schema.UtcDateTime)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class PostgresDeviceReader:
    """Reads on a few asyncpg connections of its own, lent first come first served.

    Not an asyncpg pool: its acquire and release cost a sixth of this read in
    the relay, its wait for a free connection lets newcomers overtake waiters
    (a long latency tail under load), and its reset query on release cost as
    much as the read. These connections only ever run single SELECTs in
    autocommit, so there is no session state to reset; one that fails in any
    way is dropped and replaced on its next turn.
    """

    def __init__(self, url: URL, *, schema: str | None, pool_size: int, timeout_s: float) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        # `Store.flushed` commits through these: its commit must wait for the disk
        # whatever the server's default.
        self._settings = {"synchronous_commit": "on"}
        if schema:
            self._settings["search_path"] = schema
        self._timeout_s = timeout_s
        # A turn comes with an idle slot: a connection, or None until one is
        # opened for it. The semaphore queues fairly; asyncio.Queue would let a
        # newcomer take a connection put back for a woken waiter.
        self._turns = asyncio.Semaphore(pool_size)
        self._idle: list[Any] = [None] * pool_size
        self._open: set[Any] = set()
        self._closed = False

    async def _connect(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout_s,
            command_timeout=self._timeout_s,
            server_settings=self._settings,
        )
        if self._closed:
            # `close` ran while this one was connecting: it would never be closed.
            connection.terminate()
            raise StoreUnavailable("device reads are closed")
        self._open.add(connection)
        return connection

    async def page(
        self,
        hotel_id: str,
        *,
        visible: frozenset[str] | None,
        room_id: str | None,
        after: str | None,
        limit: int,
        stale_before: datetime,
    ) -> DevicePageJson:
        args: list[Any] = [hotel_id, stale_before]
        where = ["hotel_id = $1"]
        if visible is not None:
            args.append(sorted(visible))
            where.append(f"room_id = ANY(${len(args)}::text[])")
        if room_id is not None:
            args.append(room_id)
            where.append(f"room_id = ${len(args)}")
        if after is not None:
            args.append(after)
            where.append(f"device_id > ${len(args)}")
        args.append(limit)
        sql = (
            f"SELECT {_PAGE_JSON.format(cutoff='$2')} FROM devices"  # noqa: S608
            f" WHERE {' AND '.join(where)} ORDER BY device_id LIMIT ${len(args)}"
        )
        return _joined(await self._fetch(sql, args))

    async def one(self, hotel_id: str, device_id: str, *, stale_before: datetime) -> Device | None:
        sql = (
            f"SELECT {_COLUMNS.replace('state', 'state::text')} FROM devices"  # noqa: S608
            " WHERE hotel_id = $1 AND device_id = $2"
        )
        rows = await self._fetch(sql, [hotel_id, device_id])
        if not rows:
            return None
        device_id, room, kind, firmware, online, state, seen = rows[0]
        return {
            "device_id": device_id,
            "room_id": room,
            "kind": kind,
            "firmware": firmware,
            "online": online,
            "state": orjson.Fragment(state),
            "last_seen": seen,
            "stale": seen is None or seen < stale_before,
        }

    async def _fetch(self, sql: str, args: list[Any]) -> list[Any]:
        async with self._turns:
            connection = self._idle.pop()
            try:
                if connection is None or connection.is_closed():
                    self._open.discard(connection)
                    connection = await self._connect()
                return list(await connection.fetch(sql, *args))
            except BaseException as exc:
                if connection is not None:
                    self._open.discard(connection)
                    connection.terminate()
                    connection = None
                if isinstance(exc, OSError | TimeoutError):
                    raise StoreUnavailable(f"device read failed: {type(exc).__name__}") from exc
                raise
            finally:
                self._idle.append(connection)

    async def close(self) -> None:
        self._closed = True
        connections, self._open = self._open, set()
        for connection in connections:
            try:
                await connection.close(timeout=self._timeout_s)
            except (OSError, TimeoutError):
                connection.terminate()
