"""`LiveEvents`: the relay's live event log and its watchers (docs/live-events.md).

One log per organisation (a hotel's organisation never changes, so it is
looked up once and remembered). With `bus_backend = "memory"` the log is an
`EventLog` in this process; with `"redis"` it is a Redis Stream that every
relay node reads (`RedisLog`), so a watcher on one node sees what another
node applied.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from typing import Final

import sqlalchemy as sa

from bellhop_cloud.config import BusBackend, RelayConfig
from bellhop_cloud.db.schema import hotels
from bellhop_cloud.db.store import Store
from bellhop_cloud.errors import ConfigError
from bellhop_cloud.live.checks import Rechecks
from bellhop_cloud.live.events import DEVICE_ROOMED, Entry, EventId, LiveEvent, body
from bellhop_cloud.live.log import Draft, EventLog, Fanout, Resume, Subscription
from bellhop_cloud.live.redis_log import RedisLog
from bellhop_cloud.live.rooms import Rooms

__all__ = ["LiveEvents"]

log = logging.getLogger(__name__)

ORG_CACHE_MAX: Final = 100_000
# Its own few connections for the look-ups (hotel -> organisation, device -> room).
LOOKUP_POOL: Final = 2
# Streams look at their clock (token expiry) at least this often.
TICK_S: Final = 1.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class LiveEvents:
    """Publish a hotel's live events; subscribe to an organisation's; resume after an id."""

    def __init__(self, config: RelayConfig, *, store: Store | None = None) -> None:
        """In-process, or Redis Streams for several nodes (`bus_backend`).

        Without `store` the look-ups use a small store of their own.
        """
        self.config = config
        self.fanout = Fanout()
        # The streams' session and access re-checks, one per session and scope.
        self.rechecks = Rechecks(config.events_recheck_s)
        self._streams: dict[str, int] = {}  # open streams by session, on this node
        self._owns_store = store is None
        self._store = store or Store.open(config.model_copy(update={"db_pool_size": LOOKUP_POOL}))
        self._redis: RedisLog | None = None
        if config.bus_backend is BusBackend.REDIS:
            if not config.redis_url:
                raise ConfigError("bus_backend=redis needs redis_url")
            self._redis = RedisLog(
                config.redis_url,
                keep=config.events_replay,
                timeout_s=config.redis_timeout_s,
                fanout=self.fanout,
                node=config.node_id or f"{socket.gethostname()}-{os.getpid()}",
            )
        self._logs: dict[str, EventLog] = {}
        self._start: EventId = (_now_ms(), 0)
        self._orgs: dict[str, str] = {}
        self.rooms = Rooms(self._store)
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_config(cls, config: RelayConfig, *, store: Store | None = None) -> LiveEvents:
        return cls(config, store=store)

    @property
    def subscribers(self) -> int:
        """Watchers on this node now."""
        return len(self.fanout)

    @property
    def open_streams(self) -> int:
        """Streams counted by `claim_stream` on this node and not yet over."""
        return sum(self._streams.values())

    def claim_stream(self, session_id: str) -> bool:
        """Count a stream opening for `session_id`; False past `events_streams_per_session`
        (one session's scripts must not hold all of a node's memory and checks)."""
        held = self._streams.get(session_id, 0)
        if held >= self.config.events_streams_per_session:
            return False
        self._streams[session_id] = held + 1
        return True

    def release_stream(self, session_id: str) -> None:
        """A stream counted by `claim_stream` has ended."""
        held = self._streams.get(session_id, 0) - 1
        if held > 0:
            self._streams[session_id] = held
        else:
            self._streams.pop(session_id, None)

    async def start(self) -> None:
        self._start = (_now_ms(), 0)
        if self._redis is not None:
            await self._redis.start()
        self._ticker = asyncio.create_task(self._tick(), name="live-events-tick")

    async def _tick(self) -> None:
        """Wake every stream once a tick, so each looks at its clock (token expiry)
        without a timer of its own per wait."""
        while True:
            await asyncio.sleep(TICK_S)
            self.fanout.tick()

    async def publish(self, hotel_id: str, events: Sequence[LiveEvent]) -> None:
        """Log `events` of `hotel_id` and pass them to its organisation's watchers."""
        if not events or self._closed:
            return
        org_id = await self.org_of(hotel_id)
        if org_id is None:
            log.warning("live events: hotel %s has no organisation; not published", hotel_id)
            return
        try:
            rooms = await self._rooms(hotel_id, events)
            at = _now_ms()
            drafts = []
            for event in events:
                room = event.room_id
                if room is None and event.kind in DEVICE_ROOMED:
                    room = rooms.get(str(event.data.get("device_id")))
                drafts.append(Draft(hotel_id, room, event.kind, body(hotel_id, event, room, at)))
            if self._redis is None:
                self.fanout.deliver(org_id, self._log(org_id).append(at, drafts))
            else:
                await self._redis.append(org_id, drafts)
        except BaseException:
            self.fanout.gap(org_id)  # this node's watchers are told: never a silent gap
            raise

    async def tell(self, hotel_id: str, events: Sequence[LiveEvent]) -> None:
        """`publish` for those whose own work must go on if it fails (the bridge: what it
        applied stays applied); the watchers see a gap instead."""
        try:
            await self.publish(hotel_id, events)
        except Exception:
            log.warning("live events of hotel %s not published", hotel_id, exc_info=True)

    async def subscribe(self, org_id: str, hotel_id: str | None = None) -> Subscription:
        """A bounded queue of the organisation's events from now on (of one hotel: `hotel_id`).

        Pair with `unsubscribe`. Events already logged are read with `resume`.
        """
        sub = Subscription(org_id, hotel_id, self.config.events_queue_max)
        if self._closed:
            sub.end("shutting_down")
            return sub
        first = self.fanout.add(sub)
        if first and self._redis is not None:
            try:
                await self._redis.watch(org_id)
            except BaseException:
                self.fanout.remove(sub)
                raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.fanout.remove(sub)

    async def resume(self, org_id: str, after: EventId) -> Resume:
        """What the organisation's log still holds after `after`, and whether some is gone."""
        if self._redis is not None:
            return await self._redis.resume(org_id, after)
        found = self._logs.get(org_id)
        if found is None:
            return Resume(True, [])  # nothing since this process started: not our id
        return found.resume(after)

    async def recent(self, org_id: str, count: int) -> list[Entry]:
        """The newest `count` events the organisation's log holds, oldest first."""
        if self._redis is not None:
            return await self._redis.tail(org_id, count)
        found = self._logs.get(org_id)
        return found.tail(count) if found is not None else []

    async def org_of(self, hotel_id: str) -> str | None:
        org_id = self._orgs.get(hotel_id)
        if org_id is not None:
            return org_id
        async with self._store.read() as conn:
            row = (
                await conn.execute(sa.select(hotels.c.org_id).where(hotels.c.id == hotel_id))
            ).first()
        if row is None:
            return None
        if len(self._orgs) >= ORG_CACHE_MAX:
            self._orgs.clear()
        self._orgs[hotel_id] = row[0]
        return str(row[0])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self.rechecks.close()
        self.fanout.end_all("shutting_down")
        try:
            if self._redis is not None:
                await self._redis.close()
        finally:
            if self._owns_store:
                await self._store.close()

    def _log(self, org_id: str) -> EventLog:
        found = self._logs.get(org_id)
        if found is None:
            found = self._logs[org_id] = EventLog(self.config.events_replay, self._start)
        return found

    async def _rooms(self, hotel_id: str, events: Sequence[LiveEvent]) -> dict[str, str | None]:
        """The current room of each device an event needs one for (rooms.py)."""
        for e in events:
            if e.kind == "device" and e.data.get("device_id"):
                self.rooms.moved(hotel_id, str(e.data["device_id"]), e.room_id)
        wanted = {
            str(e.data["device_id"])
            for e in events
            if e.room_id is None and e.kind in DEVICE_ROOMED and e.data.get("device_id")
        }
        return await self.rooms.of(hotel_id, wanted)
