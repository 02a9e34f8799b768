"""The relay's InfluxDB sink: every applied telemetry point and device event to InfluxDB.

    async with RelaySink.running(config, store, metrics) as sink:   # None when off
        sink.lag()

`telemetry` has no id in applied order (its key is the point itself), and
on PostgreSQL ids from a sequence commit out of order, so no position in
those tables can be a cursor. Instead triggers (migration 0006) append each
inserted point and device event to `influx_journal` in the bridge's own
transaction while the sink is on; the sink reads the journal in id order,
writes a batch (`bellhop_bridge.influx_core`), and deletes exactly the rows
InfluxDB accepted. A journal row whose point retention deleted first is
counted as lost. On PostgreSQL one node at a time runs it, the one holding a
session advisory lock (`LOCK_CLASS` and the schema's name: relays of
different schemas in one database do not exclude each other); the others try again every
`LEASE_RETRY_S` and take over when its session ends. A batch written twice
around a takeover is a harmless rewrite. See docs/influx.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from bellhop_bridge.influx_core import (
    MEASUREMENT_EVENT,
    MEASUREMENT_TELEMETRY,
    Batch,
    Entry,
    SinkCore,
    line,
    point_line,
    series_key,
)
from bellhop_bridge.influx_driver import ClientWriter, run_sink
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from bellhop_cloud.config import InfluxConfig, RelayConfig
from bellhop_cloud.db.schema import (
    device_events,
    devices,
    hotels,
    influx_journal,
    influx_sink,
    telemetry,
)
from bellhop_cloud.db.store import Store
from bellhop_cloud.metrics import RelayMetrics

__all__ = ["InfluxLag", "JournalSource", "RelaySink", "switch"]

log = logging.getLogger(__name__)

LAG_EVERY_S: Final = 5.0
# pg_try_advisory_lock's first key, "bhix" (the second is the schema's hash): any other
# use of advisory locks in the database must not pick it.
LOCK_CLASS: Final = 0x6268_6978
LEASE_RETRY_S: Final = 5.0
LOG_LAG_EVERY_S: Final = 60.0
STOP_TIMEOUT_S: Final = 5.0

j, t, e, d, h = influx_journal, telemetry, device_events, devices, hotels
_READ: Final = (
    sa.select(
        j.c.id,
        j.c.applied_ms,
        j.c.hotel_id,
        j.c.device_id,
        j.c.metric,
        j.c.ts,
        j.c.event_id,
        t.c.value,
        e.c.kind,
        e.c.data,
        d.c.room_id,
        d.c.kind,
        h.c.org_id,
    )
    .select_from(
        j.outerjoin(
            t,
            sa.and_(
                t.c.hotel_id == j.c.hotel_id,
                t.c.device_id == j.c.device_id,
                t.c.metric == j.c.metric,
                t.c.ts == j.c.ts,
            ),
        )
        .outerjoin(e, e.c.id == j.c.event_id)
        .outerjoin(d, sa.and_(d.c.hotel_id == j.c.hotel_id, d.c.device_id == j.c.device_id))
        .outerjoin(h, h.c.id == j.c.hotel_id)
    )
    .where(j.c.id > sa.bindparam("after"))
    .order_by(j.c.id)
    .limit(sa.bindparam("limit"))
)


@dataclass(frozen=True, slots=True)
class InfluxLag:
    points_behind: int
    seconds_behind: float
    written: int
    lost: int
    failures: int
    running: bool  # this node holds the sink's lock (always, on SQLite)


async def switch(store: Store, *, enabled: bool) -> None:
    """Turn the journal's triggers on or off; off also empties it (nobody would read it)."""
    async with store.write() as conn:
        await conn.execute(
            influx_sink.update().where(influx_sink.c.id == 1).values(enabled=enabled)
        )
        if not enabled:
            await conn.execute(influx_journal.delete())


class JournalSource:
    """The sink's `Source` over the relay's database."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._series: dict[tuple[Any, ...], str] = {}
        self.written = 0
        self.lost = 0
        self.backlog: tuple[int, int | None] = (0, None)
        self._backlog_at = 0.0

    async def read(self, after: int | None, limit: int) -> Sequence[Entry]:
        async with self._store.read() as conn:
            rows = (await conn.execute(_READ, {"after": after or 0, "limit": limit})).all()
            await self._count_backlog(conn)
        return [self._entry(row) for row in rows]

    async def commit(self, batch: Batch) -> None:
        written = 0 if batch.refused else len(batch.lines)
        async with self._store.write() as conn:
            await conn.execute(influx_journal.delete().where(influx_journal.c.id.in_(batch.keys)))
            await conn.execute(
                influx_sink.update()
                .where(influx_sink.c.id == 1)
                .values(
                    written=influx_sink.c.written + written,
                    lost=influx_sink.c.lost + batch.lost,
                )
            )
            row = (await conn.execute(sa.select(influx_sink.c.written, influx_sink.c.lost))).one()
        self.written, self.lost = int(row[0]), int(row[1])

    async def refresh(self) -> None:
        async with self._store.read() as conn:
            row = (await conn.execute(sa.select(influx_sink.c.written, influx_sink.c.lost))).one()
            self.written, self.lost = int(row[0]), int(row[1])
            await self._count_backlog(conn, force=True)

    def _entry(self, row: Sequence[Any]) -> Entry:
        key, applied, hotel_id, device_id, metric, ts, event_id = row[:7]
        value, event_kind, data, room, kind, org = row[7:]
        tags = {"org": org, "hotel": hotel_id, "room": room, "device": device_id, "kind": kind}
        if event_id is None:
            if value is None:
                return Entry(key, None, applied)  # retention took the point first
            ident = (org, hotel_id, room, device_id, kind)
            series = self._series.get(ident)
            if series is None:
                if len(self._series) > 100_000:
                    self._series.clear()  # bounded: rooms and kinds change, devices come and go
                series = self._series[ident] = series_key(MEASUREMENT_TELEMETRY, tags)
            return Entry(key, point_line(series, metric, value, ts), applied)
        if event_kind is None:
            return Entry(key, None, applied)
        fields: dict[str, float | int | bool | str] = {"count": 1}
        for name, member in (data or {}).items():
            if name != "count" and isinstance(member, bool | int | float | str):
                # Numbers as floats always: InfluxDB refuses a field that changes type.
                kept = (
                    float(member)
                    if isinstance(member, int) and not isinstance(member, bool)
                    else member
                )
                fields[name] = kept
        return Entry(
            key, line(MEASUREMENT_EVENT, {**tags, "event": event_kind}, fields, ts), applied
        )

    async def _count_backlog(self, conn: Any, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._backlog_at < LAG_EVERY_S:
            return
        self._backlog_at = now
        count, oldest = (
            await conn.execute(sa.select(sa.func.count(), sa.func.min(j.c.applied_ms)))
        ).one()
        self.backlog = (int(count), None if oldest is None else int(oldest))


class RelaySink:
    """The running sink: its InfluxDB client, its task and the gauges it keeps."""

    def __init__(self, influx: InfluxConfig, store: Store, metrics: RelayMetrics) -> None:
        self.config = influx
        self.metrics = metrics
        self.core = SinkCore(
            batch_size=influx.batch_size,
            flush_interval_s=influx.flush_interval_s,
            retry_min_s=influx.retry_min_s,
            retry_max_s=influx.retry_max_s,
        )
        self.source = JournalSource(store)
        self._store = store
        self.leading = False
        self._client = InfluxDBClient(
            url=influx.url,
            token=influx.resolved_token(),
            org=influx.org,
            timeout=int(influx.timeout_s * 1000),
            enable_gzip=True,
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def running(
        cls, config: RelayConfig, store: Store, metrics: RelayMetrics
    ) -> AsyncIterator[RelaySink | None]:
        """Run the sink while the block runs if `[influx]` is on; stop it on the way out."""
        await switch(store, enabled=config.influx.enabled)
        if not config.influx.enabled:
            yield None
            return
        sink = cls(config.influx, store, metrics)
        try:
            await sink.source.refresh()
            writer = ClientWriter(_write_call(sink._client, config.influx))
            task = asyncio.create_task(sink._lead(writer), name="influx")
            gauges = asyncio.create_task(sink._report(), name="influx-lag")
            log.info("InfluxDB sink to %s (bucket %s)", config.influx.url, config.influx.bucket)
            try:
                yield sink
            finally:
                for job in (task, gauges):
                    job.cancel()
                # Bounded: a write in its thread ends within the client's own timeout.
                await asyncio.wait([task, gauges], timeout=STOP_TIMEOUT_S)
        finally:
            sink._client.close()  # type: ignore[no-untyped-call]

    def lag(self) -> InfluxLag:
        count, oldest = self.source.backlog
        behind = 0.0 if oldest is None or count == 0 else max(0.0, time.time() - oldest / 1000)
        status = self.core.status
        return InfluxLag(
            count, behind, self.source.written, self.source.lost, status.failures, self.leading
        )

    async def _lead(self, writer: ClientWriter) -> None:
        """Run the sink while this node holds the lock; wait for it while another does."""
        if self._store.is_sqlite:  # one process: nobody to share with
            self.leading = True
            await run_sink(self.core, self.source, writer)
            return
        while True:
            try:
                async with self._store.engine.connect() as conn:
                    schema = sa.func.hashtext(sa.func.current_schema())
                    lock = sa.func.pg_try_advisory_lock(LOCK_CLASS, schema)
                    held = await conn.scalar(sa.select(lock))
                    await conn.commit()
                    if held:
                        log.info("InfluxDB sink: this node writes (lock taken)")
                        try:
                            await self._hold(conn, writer)
                        finally:
                            # The lock lives as long as the session: closing it (never
                            # back to the pool, still locked) lets another node take over.
                            await conn.invalidate()
            except (sa.exc.DBAPIError, OSError) as exc:
                log.warning("InfluxDB sink: lock's connection lost (%s); trying again", exc)
            await asyncio.sleep(LEASE_RETRY_S)

    async def _hold(self, conn: Any, writer: ClientWriter) -> None:
        """Write while the lock's session lives (it is checked every LEASE_RETRY_S)."""
        self.leading = True
        # A fresh core: what an earlier term had in flight is read again from the journal.
        old = self.core
        self.core = SinkCore(
            batch_size=old.batch_size,
            flush_interval_s=old.flush_interval_s,
            retry_min_s=old.retry_min_s,
            retry_max_s=old.retry_max_s,
            status=old.status,
        )
        await self.source.refresh()
        task = asyncio.create_task(run_sink(self.core, self.source, writer), name="influx-run")
        try:
            while not task.done():
                await asyncio.wait([task], timeout=LEASE_RETRY_S)
                await conn.scalar(sa.select(1))  # raises once the session is gone
                await conn.commit()
        finally:
            self.leading = False
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _report(self) -> None:
        logged = time.monotonic()
        while True:
            lag = self.lag()
            m = self.metrics
            m.influx_points_behind.set(lag.points_behind)
            m.influx_seconds_behind.set(lag.seconds_behind)
            m.influx_lost.set(lag.lost)
            m.influx_written.set(lag.written)
            if time.monotonic() - logged >= LOG_LAG_EVERY_S and (
                lag.failures or lag.seconds_behind > LOG_LAG_EVERY_S
            ):
                logged = time.monotonic()
                log.warning(
                    "InfluxDB sink behind by %d points (%.0f s); %d lost; last error: %s",
                    lag.points_behind,
                    lag.seconds_behind,
                    lag.lost,
                    self.core.status.last_error,
                )
            await asyncio.sleep(1.0)


def _write_call(client: InfluxDBClient, influx: InfluxConfig) -> Callable[[list[str]], None]:
    api = client.write_api(write_options=SYNCHRONOUS)
    # The generated class holds its values as plain strings; the stubs want the class.
    precision: WritePrecision = WritePrecision.MS  # type: ignore[assignment]

    def write(lines: list[str]) -> None:
        api.write(influx.bucket, influx.org, "\n".join(lines), write_precision=precision)

    return write
