"""Login throttling: fixed-window counters, in-process or shared through Redis.

`WindowCounter` is the sans-I/O core (fed keys and a clock); `MemoryRateLimiter`
wraps it for one process and `RedisRateLimiter` keeps the same counts in Redis
so that several relay nodes throttle together.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from redis.exceptions import RedisError

from bellhop_cloud.errors import StoreUnavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    window_s: float


class RateLimiter(Protocol):
    async def hit(self, key: str, limit: Limit) -> float | None:
        """Count one event; return seconds to wait when this one is over the limit."""

    async def blocked(self, key: str, limit: Limit) -> float | None:
        """Seconds to wait when `key` is already at its limit, without counting."""

    async def reset(self, key: str) -> None: ...

    async def close(self) -> None: ...


class WindowCounter:
    """Counts events per key in fixed windows aligned to the key's first event."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, count)
        self._max_keys = max_keys

    def hit(self, key: str, limit: Limit, now: float) -> float | None:
        end, count = self._current(key, limit, now)
        count += 1
        self._windows[key] = (end, count)
        if len(self._windows) > self._max_keys:
            self._prune(now)
        return end - now if count > limit.count else None

    def blocked(self, key: str, limit: Limit, now: float) -> float | None:
        end, count = self._current(key, limit, now)
        return end - now if count >= limit.count else None

    def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    def _current(self, key: str, limit: Limit, now: float) -> tuple[float, int]:
        end, count = self._windows.get(key, (0.0, 0))
        if end <= now:
            return now + limit.window_s, 0
        return end, count

    def _prune(self, now: float) -> None:
        # Expired windows first; if an attacker floods distinct keys, drop the
        # oldest half rather than grow without bound.
        self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
        if len(self._windows) > self._max_keys:
            keep = sorted(self._windows.items(), key=lambda kv: kv[1][0])
            self._windows = dict(keep[len(keep) // 2 :])


class MemoryRateLimiter:
    """The embedded default: counts live in this process."""

    def __init__(self) -> None:
        self._counter = WindowCounter()

    async def hit(self, key: str, limit: Limit) -> float | None:
        return self._counter.hit(key, limit, time.monotonic())

    async def blocked(self, key: str, limit: Limit) -> float | None:
        return self._counter.blocked(key, limit, time.monotonic())

    async def reset(self, key: str) -> None:
        self._counter.reset(key)

    async def close(self) -> None:
        return None


class RedisRateLimiter:
    """Counts in Redis (INCR + PEXPIRE NX), so every relay node sees the same numbers."""

    def __init__(
        self, redis: Redis, *, prefix: str = "bellhop:ratelimit:", timeout_s: float
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._timeout_s = timeout_s

    @classmethod
    def from_url(
        cls, url: str, *, timeout_s: float, prefix: str = "bellhop:ratelimit:"
    ) -> RedisRateLimiter:
        from redis.asyncio import Redis

        client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, prefix=prefix, timeout_s=timeout_s)

    async def hit(self, key: str, limit: Limit) -> float | None:
        name = self._prefix + key
        window_ms = max(1, math.ceil(limit.window_s * 1000))
        try:
            async with asyncio.timeout(self._timeout_s):
                pipe = self._redis.pipeline(transaction=True)
                pipe.incr(name)
                pipe.pexpire(name, window_ms, nx=True)
                pipe.pttl(name)
                count, _, ttl_ms = await pipe.execute()
        except (TimeoutError, OSError, RedisError) as exc:
            raise StoreUnavailable("rate limiter unavailable") from exc
        return max(int(ttl_ms), 0) / 1000 if int(count) > limit.count else None

    async def blocked(self, key: str, limit: Limit) -> float | None:
        name = self._prefix + key
        try:
            async with asyncio.timeout(self._timeout_s):
                pipe = self._redis.pipeline(transaction=False)
                pipe.get(name)
                pipe.pttl(name)
                count, ttl_ms = await pipe.execute()
        except (TimeoutError, OSError, RedisError) as exc:
            raise StoreUnavailable("rate limiter unavailable") from exc
        if count is None or int(count) < limit.count:
            return None
        return max(int(ttl_ms), 0) / 1000

    async def reset(self, key: str) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.delete(self._prefix + key)
        except (TimeoutError, OSError, RedisError) as exc:
            raise StoreUnavailable("rate limiter unavailable") from exc

    async def close(self) -> None:
        await self._redis.aclose()
