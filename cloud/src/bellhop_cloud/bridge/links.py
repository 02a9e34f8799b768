"""The link rows of all bridges on this node, written in few transactions (group commit).

    links = Links(store)
    async with links.running():
        await links.create(gateway_id, hotel_id, now)   # a first connection: its row
        links.opened(gateway_id, now)
        links.heard(gateway_id, backlog_events=..., oldest_unsent_ms=..., now=...)
        links.closed(gateway_id, reason="...", now=...)

A handshake used to cost a transaction of its own (and a close another, and
each heartbeat a third): under a reconnect storm of thousands of gateways,
the relay spent its time in database round trips, one after the other behind
SQLite's single writer. Here what an open, a close or a heartbeat changes in
a link row is merged per gateway (the latest value of each column wins, in
the order they happened) and written with the next transaction, at most
`every_s` later, one statement for all gateways with the same columns
changed. A first connection's row is the exception: its Welcome waits for
the row's commit (every `create` waiting then shares one transaction), so
that the row exists before the gateway's first batch. On the way out
everything still pending is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.db.schema import gateway_links, gateways
from bellhop_cloud.db.store import Store

__all__ = ["Links"]

log = logging.getLogger(__name__)

# A failed write is tried again this much later (its changes are kept).
RETRY_S: Final = 1.0


class Links:
    def __init__(self, store: Store, every_s: float = 1.0) -> None:
        self.store = store
        self.every_s = every_s
        self._creates: list[tuple[str, str, datetime, asyncio.Future[None]]] = []
        self._changes: dict[str, dict[str, Any]] = {}  # gateway id -> columns of its link row
        self._seen: dict[str, datetime] = {}  # gateway id -> its `gateways.last_seen`
        self._wake = asyncio.Event()
        self._stopping = False
        self.transactions = 0  # written so far (for tests and benchmarks)

    # -- what the endpoint calls ---------------------------------------------------------
    async def create(self, gateway_id: str, hotel_id: str, now: datetime) -> None:
        """The gateway's first bridge here: its row, lanes at 0. Returns once committed,
        with every other first connection waiting then."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._creates.append((gateway_id, hotel_id, now, future))
        self._wake.set()
        await asyncio.shield(future)

    def opened(self, gateway_id: str, now: datetime) -> None:
        self._change(
            gateway_id, connected=True, connected_at=now, close_reason=None, last_heard_at=now
        )

    def closed(self, gateway_id: str, *, reason: str, now: datetime) -> None:
        self._change(gateway_id, connected=False, disconnected_at=now, close_reason=reason[:64])

    def heard(
        self, gateway_id: str, *, backlog_events: int, oldest_unsent_ms: int | None, now: datetime
    ) -> None:
        """A heartbeat: the edge's backlog, as it reported it (written with the next commit)."""
        self._change(
            gateway_id,
            last_heard_at=now,
            backlog_events=backlog_events,
            oldest_unsent_ms=oldest_unsent_ms,
        )
        self._seen[gateway_id] = now

    @property
    def pending(self) -> int:
        return len(self._creates) + len(self._changes) + len(self._seen)

    def _change(self, gateway_id: str, **columns: Any) -> None:
        self._changes.setdefault(gateway_id, {}).update(columns)

    # -- the writer ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Links]:
        self._stopping = False
        task = asyncio.create_task(self._run(), name="bridge-links")
        try:
            yield self
        finally:
            # Never cancelled in a transaction: a connection cancelled in the middle of
            # one can keep SQLite's write lock until it is collected.
            self._stopping = True
            self._wake.set()
            await asyncio.gather(task, return_exceptions=True)
            try:
                await self.flush()
            except Exception:  # the database is away (asyncpg raises OSError, not SQLAlchemy's)
                log.warning("bridge: the last link states could not be written", exc_info=True)
            for *_, future in self._creates:
                future.cancel()
            self._creates.clear()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
            except Exception:  # whatever it is, the writer must outlive it and try again
                log.warning("bridge: link states not written; trying again", exc_info=True)
                await asyncio.sleep(RETRY_S)

    async def flush(self) -> None:
        """Write everything pending in one transaction (nothing when nothing is)."""
        if not self.pending:
            return
        creates, self._creates = self._creates, []
        changes, self._changes = self._changes, {}
        seen, self._seen = self._seen, {}
        try:
            async with self.store.write() as db:
                await self._write(db, creates, changes, seen)
        except BaseException as exc:
            # Keep what was not written, under anything newer.
            for gateway_id, columns in changes.items():
                self._changes[gateway_id] = columns | self._changes.get(gateway_id, {})
            for gateway_id, at in seen.items():
                self._seen.setdefault(gateway_id, at)
            for *_, future in creates:
                if not future.done():
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
            raise
        self.transactions += 1
        for *_, future in creates:
            if not future.done():
                future.set_result(None)

    async def _write(
        self,
        db: AsyncConnection,
        creates: list[tuple[str, str, datetime, asyncio.Future[None]]],
        changes: dict[str, dict[str, Any]],
        seen: dict[str, datetime],
    ) -> None:
        fresh = {
            gateway_id: {
                "gateway_id": gateway_id,
                "hotel_id": hotel_id,
                "last_bulk_seq": 0,
                "last_priority_seq": 0,
                "connected": True,
                "connected_at": now,
                "last_heard_at": now,
                "backlog_events": 0,
                "gap_points": 0,
                "gap_events": 0,
            }
            for gateway_id, hotel_id, now, _ in creates
        }
        if fresh:
            statement = (
                postgresql.insert(gateway_links)
                if db.dialect.name == "postgresql"
                else sqlite.insert(gateway_links)
            )
            await db.execute(statement.on_conflict_do_nothing(), list(fresh.values()))
        # One executemany per set of columns changed (the latest value of each wins).
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for gateway_id, columns in changes.items():
            names = tuple(sorted(columns))
            groups.setdefault(names, []).append(
                {"gid": gateway_id, **{f"v_{n}": columns[n] for n in names}}
            )
        for names, rows in groups.items():
            await db.execute(
                gateway_links.update()
                .where(gateway_links.c.gateway_id == sa.bindparam("gid"))
                .values({n: sa.bindparam(f"v_{n}") for n in names}),
                rows,
            )
        if seen:
            await db.execute(
                gateways.update()
                .where(gateways.c.id == sa.bindparam("gid"))
                .values(last_seen=sa.bindparam("v_last_seen")),
                [{"gid": g, "v_last_seen": at} for g, at in seen.items()],
            )
