"""The gateway's InfluxDB sink: telemetry and device events to an InfluxDB on the LAN.

    async with InfluxSink.running(config) as sink:   # None when `[influx]` is off
        ...
        sink.lag()                                   # points and seconds behind

The outbox is the gateway's one durable, ordered record of what it applied
(every point and device event, seq from AUTOINCREMENT, never reused), so the
sink reads it after its own position (`influx_sink.cursor`, schema v7) and
moves that position only after InfluxDB accepted a batch
(`bellhop_bridge.influx_core`). The bridge's acknowledgements do not matter
here; retention deleting a row the sink has not written yet is counted by the
schema's trigger as lost. See docs/influx.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge.influx_core import (
    MEASUREMENT_EVENT,
    MEASUREMENT_TELEMETRY,
    Batch,
    ClientWriter,
    Entry,
    SinkCore,
    line,
    point_line,
    run_sink,
    series_key,
)
from google.protobuf import json_format
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision

from bellhop_edge.config import EdgeConfig, InfluxConfig
from bellhop_edge.store import outbox
from bellhop_edge.store.schema import Synchronous, connect, transaction

__all__ = ["InfluxLag", "InfluxSink", "OutboxSource"]

log = logging.getLogger(__name__)

# The sink's own connection reads in large sequential runs: a modest cache is enough.
CACHE_KIB: Final = 8 * 1024
# Rooms and kinds of devices are read again this often (and whenever one is unknown).
DEVICES_EVERY_S: Final = 30.0
# Counting the backlog scans it: often enough for a gauge, rarely enough to cost nothing.
LAG_EVERY_S: Final = 5.0
LOG_LAG_EVERY_S: Final = 60.0
STOP_TIMEOUT_S: Final = 5.0

_EVENT_NAMES: Final = {
    v: k.removeprefix("EVENT_KIND_").lower() for k, v in common_pb2.EventKind.items()
}
_READ = """
SELECT o.seq, o.ts, o.kind, s.device_id, s.metric, o.point_ts, o.value, o.payload
FROM outbox o LEFT JOIN series s ON s.series_id = o.series_id
WHERE o.seq > ? AND o.kind IN (3, 5) ORDER BY o.seq LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class InfluxLag:
    """How far InfluxDB is behind the gateway's store, and what the sink has done."""

    points_behind: int
    seconds_behind: float
    written: int
    lost: int
    failures: int


class OutboxSource:
    """The sink's `Source` over the gateway's SQLite store; every call runs in a thread."""

    def __init__(self, conn: sqlite3.Connection, *, hotel_id: str, org: str | None) -> None:
        self._conn = conn
        self._hotel_id = hotel_id
        self._org = org
        self._devices: dict[str, tuple[str | None, str | None]] = {}
        self._series: dict[str, str] = {}
        self._devices_at = 0.0
        self.cursor = 0
        self.lost = 0
        # Entries after the cursor, and the applied time of the oldest of them.
        self.backlog: tuple[int, int | None] = (0, None)
        self._backlog_at = 0.0

    def open(self) -> None:
        """Turn the sink on; the first time, from the outbox's end (what comes next)."""
        with transaction(self._conn):
            enabled, cursor, lost = self._conn.execute(
                "SELECT enabled, cursor, lost FROM influx_sink WHERE id = 1"
            ).fetchone()
            if not enabled:
                cursor = outbox.last_seq(self._conn)
                self._conn.execute(
                    "UPDATE influx_sink SET enabled = 1, cursor = ? WHERE id = 1", (cursor,)
                )
        self.cursor, self.lost = int(cursor), int(lost)
        self._count_backlog(force=True)

    async def read(self, after: int | None, limit: int) -> Sequence[Entry]:
        return await asyncio.to_thread(self._read, self.cursor if after is None else after, limit)

    async def commit(self, batch: Batch) -> None:
        await asyncio.to_thread(self._commit, batch.last)

    def _read(self, after: int, limit: int) -> list[Entry]:
        rows = self._conn.execute(_READ, (after, limit)).fetchall()
        self._count_backlog()
        if any(r[3] is not None and r[3] not in self._devices for r in rows):
            self._load_devices(force=True)
        else:
            self._load_devices()
        entries = []
        for seq, ts, kind, device_id, metric, point_ts, value, payload in rows:
            if kind == outbox.OutboxKind.TELEMETRY:
                text = point_line(self._series_of(device_id), metric, value, point_ts)
            else:
                text = self._event_line(payload)
            entries.append(Entry(seq, text, ts))
        return entries

    def _commit(self, last: int) -> None:
        with transaction(self._conn):
            self._conn.execute(
                "UPDATE influx_sink SET cursor = max(cursor, ?) WHERE id = 1", (last,)
            )
            self.lost = int(
                self._conn.execute("SELECT lost FROM influx_sink WHERE id = 1").fetchone()[0]
            )
        self.cursor = max(self.cursor, last)

    def _series_of(self, device_id: str) -> str:
        series = self._series.get(device_id)
        if series is None:
            series = series_key(MEASUREMENT_TELEMETRY, self._tags(device_id))
            self._series[device_id] = series
        return series

    def _tags(self, device_id: str) -> dict[str, str | None]:
        room, kind = self._devices.get(device_id, (None, None))
        return {
            "org": self._org,
            "hotel": self._hotel_id,
            "room": room,
            "device": device_id,
            "kind": kind,
        }

    def _event_line(self, payload: bytes | None) -> str | None:
        if payload is None:
            return None
        event = bridge_pb2.OutboxEvent.FromString(payload).device_event
        if event.device_id not in self._devices:
            self._load_devices(force=True)
        data = json_format.MessageToDict(event.data)
        fields: dict[str, float | int | bool | str] = {"count": 1}
        for key, value in data.items():
            if key != "count" and isinstance(value, bool | int | float | str):
                fields[key] = value
        tags = {**self._tags(event.device_id), "event": _EVENT_NAMES.get(event.kind, "unknown")}
        return line(MEASUREMENT_EVENT, tags, fields, event.ts.ToMilliseconds())

    def _load_devices(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._devices_at < DEVICES_EVERY_S:
            return
        self._devices_at = now
        devices = {
            str(d): (r, k)
            for d, r, k in self._conn.execute("SELECT device_id, room_id, kind FROM devices")
        }
        if devices != self._devices:
            self._devices = devices
            self._series.clear()

    def _count_backlog(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._backlog_at < LAG_EVERY_S:
            return
        self._backlog_at = now
        count, oldest = self._conn.execute(
            "SELECT count(*), min(ts) FROM outbox WHERE seq > ? AND kind IN (3, 5)",
            (self.cursor,),
        ).fetchone()
        self.backlog = (int(count), None if oldest is None else int(oldest))


class InfluxSink:
    """The running sink: its connection, its InfluxDB client and its task."""

    def __init__(self, config: EdgeConfig) -> None:
        influx = config.influx
        self.config = influx
        self.core = SinkCore(
            batch_size=influx.batch_size,
            flush_interval_s=influx.flush_interval_s,
            retry_min_s=influx.retry_min_s,
            retry_max_s=influx.retry_max_s,
        )
        self._conn = connect(config.database_path, Synchronous.NORMAL, cache_kib=CACHE_KIB)
        self.source = OutboxSource(self._conn, hotel_id=config.hotel_id, org=influx.organisation)
        self._client = _client(influx)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, config: EdgeConfig) -> AsyncIterator[InfluxSink | None]:
        """Run the sink while the block runs, if `[influx]` is on; stop it on the way out."""
        if not config.influx.enabled:
            yield None
            return
        sink = cls(config)
        try:
            await asyncio.to_thread(sink.source.open)
            writer = ClientWriter(_write_call(sink._client, config.influx))
            task = asyncio.create_task(run_sink(sink.core, sink.source, writer), name="influx")
            reporter = asyncio.create_task(sink._report(), name="influx-lag")
            log.info(
                "InfluxDB sink to %s (bucket %s) from outbox seq %d",
                config.influx.url,
                config.influx.bucket,
                sink.source.cursor,
            )
            try:
                yield sink
            finally:
                for t in (task, reporter):
                    t.cancel()
                # Bounded: a write in its thread ends within the client's own timeout.
                await asyncio.wait([task, reporter], timeout=STOP_TIMEOUT_S)
        finally:
            await asyncio.to_thread(sink._close)

    def lag(self) -> InfluxLag:
        count, oldest = self.source.backlog
        status = self.core.status
        behind = 0.0 if oldest is None or count == 0 else max(0.0, time.time() - oldest / 1000)
        return InfluxLag(count, behind, status.written, self.source.lost, status.failures)

    async def _report(self) -> None:
        """Log the lag while the sink is behind or failing; quiet when it keeps up."""
        while True:
            await asyncio.sleep(LOG_LAG_EVERY_S)
            lag = self.lag()
            if lag.failures or lag.seconds_behind > LOG_LAG_EVERY_S:
                log.warning(
                    "InfluxDB sink behind by %d points (%.0f s); %d written, %d lost;"
                    " last error: %s",
                    lag.points_behind,
                    lag.seconds_behind,
                    lag.written,
                    lag.lost,
                    self.core.status.last_error,
                )

    def _close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]
        self._conn.close()


def _client(influx: InfluxConfig) -> InfluxDBClient:
    return InfluxDBClient(
        url=influx.url,
        token=influx.resolved_token(),
        org=influx.org,
        timeout=int(influx.timeout_s * 1000),
        enable_gzip=True,
    )


def _write_call(client: InfluxDBClient, influx: InfluxConfig) -> Callable[[list[str]], None]:
    api = client.write_api(write_options=SYNCHRONOUS)

    def write(lines: list[str]) -> None:
        # The generated class holds its values as plain strings; the stubs want the class.
        precision: WritePrecision = WritePrecision.MS  # type: ignore[assignment]
        api.write(influx.bucket, influx.org, "\n".join(lines), write_precision=precision)

    return write
