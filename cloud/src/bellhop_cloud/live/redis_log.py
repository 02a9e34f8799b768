"""Several relay nodes: one Redis Stream per organisation is the event log.

Publishing is `XADD` (trimmed to about `keep` entries, the stream expiring
after `IDLE_EXPIRY_S` without events); the stream ids are the SSE ids. Each
node runs one reader task that `XREAD BLOCK`s on the streams of the
organisations it has watchers for, from the last id it passed on, and fans
out to its own watchers; a node-private "wake" stream in the same `XREAD`
lets a newly watched organisation join at once. Every call has a timeout;
after the reader lost Redis, each organisation it reads is checked for
entries trimmed past its position, and its watchers are told of a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from redis.exceptions import RedisError

from bellhop_cloud.live.events import Entry, EventId, format_id, parse_id
from bellhop_cloud.live.log import Draft, Fanout, Resume

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisLog"]

log = logging.getLogger(__name__)

PREFIX: Final = "bellhop:live:"
BLOCK_S: Final = 5.0  # one XREAD waits this long at most, then the reader goes round
READ_COUNT: Final = 1000  # entries per stream per XREAD
PAGE: Final = 1000  # entries per XRANGE of a resume
RETRY_S: Final = 1.0
IDLE_EXPIRY_S: Final = 7 * 86_400
MIN_KEEP: Final = 100  # readers need an entry to outlive its XADD
ERRORS = (TimeoutError, OSError, RedisError)


def _entry(raw_id: str, fields: dict[str, str]) -> Entry | None:
    key = parse_id(raw_id)
    hotel_id, kind, payload = fields.get("h"), fields.get("k"), fields.get("p")
    if key is None or not hotel_id or not kind or payload is None:
        return None  # not one of ours
    return Entry(key, hotel_id, fields.get("r") or None, kind, payload)


class RedisLog:
    def __init__(
        self,
        url: str,
        *,
        keep: int,
        timeout_s: float,
        fanout: Fanout,
        node: str,
        prefix: str = PREFIX,
    ) -> None:
        from redis.asyncio import Redis

        self._redis: Redis = Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
        # The reader's own connection: its XREAD blocks longer than other calls may take.
        self._reading: Redis = Redis.from_url(
            url,
            socket_timeout=BLOCK_S + timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        self._keep = max(keep, MIN_KEEP)
        self._timeout_s = timeout_s
        self._fanout = fanout
        self._prefix = prefix
        self._wake_key = f"{prefix}wake:{node}:{secrets.token_hex(4)}"
        self._wake_at = "0-0"
        self._positions: dict[str, str] = {}  # organisation -> last id passed on
        self._joined = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    def key(self, org_id: str) -> str:
        return self._prefix + org_id

    async def start(self) -> None:
        self._reader = asyncio.create_task(self._read(), name="live-events-reader")

    async def append(self, org_id: str, drafts: Sequence[Draft]) -> None:
        key = self.key(org_id)
        async with asyncio.timeout(self._timeout_s):
            pipe = self._redis.pipeline(transaction=False)
            for d in drafts:
                fields = {"h": d.hotel_id, "r": d.room_id or "", "k": d.kind, "p": d.payload}
                pipe.xadd(key, fields, maxlen=self._keep, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, IDLE_EXPIRY_S)
            await pipe.execute()

    async def watch(self, org_id: str) -> None:
        """Start passing on the organisation's events, from its newest one now."""
        async with asyncio.timeout(self._timeout_s):
            newest: Any = await self._redis.xrevrange(self.key(org_id), count=1)
        self._positions.setdefault(org_id, newest[0][0] if newest else "0-0")
        self._joined.set()
        with contextlib.suppress(*ERRORS):  # the reader goes round within BLOCK_S anyway
            async with asyncio.timeout(self._timeout_s):
                await self._redis.xadd(self._wake_key, {"w": "1"}, maxlen=1)
                await self._redis.expire(self._wake_key, IDLE_EXPIRY_S)

    async def resume(self, org_id: str, after: EventId) -> Resume:
        """What the stream holds after `after`, page by page, each page checked for trimming."""
        key, position = self.key(org_id), after
        entries: list[Entry] = []
        gap, first = False, True
        while True:
            async with asyncio.timeout(self._timeout_s):
                pipe = self._redis.pipeline(transaction=True)
                pipe.xrange(key, count=1)
                pipe.xrevrange(key, count=1)
                pipe.xrange(key, min=f"({format_id(position)}", count=PAGE)
                oldest, newest, page = await pipe.execute()
            if not oldest:  # nothing kept: the stream expired, or Redis lost it
                return Resume(True, entries)
            if first:
                first = False
                if after > _key(newest[0][0]):  # an id this stream never issued
                    gap, position = True, (0, 0)
                    continue
            if _key(oldest[0][0]) > position:
                gap = True  # trimmed past where this resume stood
            entries.extend(e for e in (_entry(i, f) for i, f in page) if e is not None)
            if len(page) < PAGE:
                return Resume(gap, entries)
            position = _key(page[-1][0])

    async def tail(self, org_id: str, count: int) -> list[Entry]:
        async with asyncio.timeout(self._timeout_s):
            raw: Any = await self._redis.xrevrange(self.key(org_id), count=count)
        found = [e for e in (_entry(i, f) for i, f in raw) if e is not None]
        found.reverse()
        return found

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        with contextlib.suppress(*ERRORS):
            async with asyncio.timeout(self._timeout_s):
                await self._redis.delete(self._wake_key)
        await self._reading.aclose()
        await self._redis.aclose()

    async def _read(self) -> None:
        failing = False
        while True:
            for org_id in [o for o in self._positions if o not in self._fanout.by_org]:
                del self._positions[org_id]  # its last watcher here left
            if not self._positions:
                self._joined.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BLOCK_S):
                        await self._joined.wait()
                continue
            try:
                if failing:
                    await self._after_outage()
                    failing = False
                await self._read_once()
            except ERRORS as exc:
                if not failing:
                    log.warning("live events: cannot read from Redis (%s)", type(exc).__name__)
                failing = True
                await asyncio.sleep(RETRY_S)
            except Exception:  # whatever it is, the reader must outlive it and try again
                log.exception("live events: the reader failed; retrying")
                failing = True
                await asyncio.sleep(RETRY_S)

    async def _read_once(self) -> None:
        streams = {self.key(o): p for o, p in self._positions.items()}
        streams[self._wake_key] = self._wake_at
        async with asyncio.timeout(BLOCK_S + self._timeout_s):
            found: Any = await self._reading.xread(
                streams,  # type: ignore[arg-type]
                count=READ_COUNT,
                block=int(BLOCK_S * 1000),
            )
        for key, items in found or ():
            if key == self._wake_key:
                self._wake_at = items[-1][0]
                continue
            org_id = key[len(self._prefix) :]
            if org_id not in self._positions or not items:
                continue
            self._positions[org_id] = items[-1][0]
            entries = [e for e in (_entry(i, f) for i, f in items) if e is not None]
            self._fanout.deliver(org_id, entries)

    async def _after_outage(self) -> None:
        """Back after an outage: a gap where the stream moved past us, or was lost."""
        for org_id, position in list(self._positions.items()):
            async with asyncio.timeout(self._timeout_s):
                oldest: Any = await self._redis.xrange(self.key(org_id), count=1)
            if not oldest:
                if position != "0-0":
                    self._positions[org_id] = "0-0"
                    self._fanout.gap(org_id)
            elif _key(oldest[0][0]) > _key(position):
                self._fanout.gap(org_id)


def _key(text: str) -> EventId:
    return parse_id(text) or (0, 0)
