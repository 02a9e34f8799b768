"""How long the relay keeps what the bridge brought, and the task that prunes the rest.

    async with Retention(store, config).running():   # prunes every retention_interval_s
        ...

Current state (devices, rooms, open alerts) is never pruned: only history.
Telemetry and device events go by the time the edge measured them; alerts and
command results once they ended (cleared or completed) that long ago; gap
records by when they arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.schema import (
    alerts,
    command_results,
    device_events,
    downlink,
    sync_gaps,
    telemetry,
)
from bellhop_cloud.db.store import Store

__all__ = ["Retention"]

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
CHUNK = 5_000  # rows deleted per transaction


@dataclass(slots=True)
class Retention:
    store: Store
    config: RelayConfig
    passes: int = 0
    deleted: int = 0

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """One pass: delete what is past its retention; returns rows deleted per table."""
        now = now or datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        c = self.config
        history = now_ms - c.telemetry_retention_days * DAY_MS
        events = now_ms - c.events_retention_days * DAY_MS
        ended = now_ms - c.alerts_retention_days * DAY_MS
        expired = {
            telemetry: telemetry.c.ts < history,
            device_events: device_events.c.ts < events,
            alerts: sa.and_(alerts.c.state == "cleared", alerts.c.cleared_at < ended),
            command_results: command_results.c.completed_at < ended,
            # What was sent down and is answered or expired: the command's result stays
            # in command_results; the request itself is kept as long (and in the audit log).
            downlink: sa.and_(
                downlink.c.state.in_(("done", "expired")), downlink.c.requested_at < ended
            ),
            sync_gaps: sync_gaps.c.received_at < now - timedelta(days=c.events_retention_days),
        }
        deleted: dict[str, int] = {}
        for table, condition in expired.items():
            deleted[table.name] = await self._delete(table, condition)
        self.passes += 1
        self.deleted += sum(deleted.values())
        return deleted

    async def _delete(self, table: sa.Table, condition: sa.ColumnElement[bool]) -> int:
        """Delete in chunks of CHUNK rows by primary key, a short transaction each, so that
        a pass over a large history never holds the database's writes up for long."""
        key = sa.tuple_(*table.primary_key.columns)
        chosen = sa.select(*table.primary_key.columns).where(condition).limit(CHUNK)
        statement = table.delete().where(key.in_(chosen.scalar_subquery()))
        total = 0
        while True:
            async with self.store.write() as conn:
                result = await conn.execute(statement)
            count = max(result.rowcount, 0)
            total += count
            if count < CHUNK:
                return total
            await asyncio.sleep(0)  # let the bridge's writes in between chunks

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Retention]:
        task = asyncio.create_task(self._loop(), name="relay-retention")
        try:
            yield self
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                deleted = await self.prune()
            except Exception:  # a database away or a bug: the next pass tries again
                log.warning("retention: the pass failed; trying again later", exc_info=True)
            else:
                if any(deleted.values()):
                    log.info(
                        "retention: deleted %s in %.1f s",
                        ", ".join(f"{n} {t}" for t, n in deleted.items() if n),
                        time.monotonic() - started,
                    )
            await asyncio.sleep(self.config.retention_interval_s)
