"""Nudges between relay nodes: "hotel H has something to send", "command C has a result".

    bus = bus_for(config)          # in-process, or Redis pub/sub for several nodes
    bus.on("downlink", handler)    # before start(); handler(message: str) -> None
    await bus.start()
    await bus.publish("downlink", hotel_id)
    await bus.close()

A nudge is only ever a hint: what it points at is in the database, and each
node also looks there on its own every few seconds, so a nudge lost with a
Redis restart costs latency, never a command (docs/scale-out.md). That is why
plain pub/sub is enough here. A message may carry a copy of what it points at
(bridge/downlink.py: the items just committed, a result just stored) to spare
the receiver a read; the receiver checks it and reads the database instead when
it is missing or does not parse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

from redis.exceptions import RedisError

from bellhop_cloud.config import BusBackend, RelayConfig
from bellhop_cloud.errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["Bus", "MemoryBus", "RedisBus", "bus_for"]

log = logging.getLogger(__name__)

PREFIX: Final = "bellhop:bus:"
# A message's ceiling, both ways: the copy a nudge carries is bounded by its sender
# (downlink.CARRY_MAX); anything longer is not ours, and is dropped unread rather than
# parsed, so a stray publisher on the channel cannot make a node decode megabytes.
MESSAGE_MAX: Final = 8192
RETRY_S: Final = 1.0

Handler = Callable[[str], None]


class Bus(Protocol):
    def on(self, channel: str, handler: Handler) -> None: ...
    async def start(self) -> None: ...
    async def publish(self, channel: str, message: str) -> None: ...
    async def close(self) -> None: ...


class _Handlers:
    def __init__(self) -> None:
        self.handlers: dict[str, list[Handler]] = {}

    def on(self, channel: str, handler: Handler) -> None:
        self.handlers.setdefault(channel, []).append(handler)

    def deliver(self, channel: str, message: str) -> None:
        for handler in self.handlers.get(channel, ()):
            try:
                handler(message)
            except Exception:  # one handler's bug must not starve the others
                log.exception("bus: a handler of %s failed", channel)


class MemoryBus(_Handlers):
    """One process: a publish calls the handlers directly (the embedded default)."""

    async def start(self) -> None:
        return None

    async def publish(self, channel: str, message: str) -> None:
        self.deliver(channel, message)

    async def close(self) -> None:
        return None


class RedisBus(_Handlers):
    """Several nodes: Redis pub/sub, one subscriber connection per node."""

    def __init__(self, redis: Redis, *, timeout_s: float) -> None:
        super().__init__()
        self._redis = redis
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None
        self.lost = 0  # publishes that did not reach Redis (the periodic look covers them)

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float) -> RedisBus:
        from redis.asyncio import Redis

        # No socket timeout: the subscriber waits for messages; its reads are bounded below.
        client = Redis.from_url(url, socket_connect_timeout=timeout_s)
        return cls(client, timeout_s=timeout_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="bus-listen")

    async def publish(self, channel: str, message: str) -> None:
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._redis.publish(PREFIX + channel, message)
        except (RedisError, OSError, TimeoutError):
            self.lost += 1
            log.warning("bus: a nudge on %s did not reach Redis", channel)

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                async with asyncio.timeout(self._timeout_s):
                    await pubsub.subscribe(*(PREFIX + c for c in self.handlers))
                await self._pump(pubsub)
            except (RedisError, OSError, TimeoutError):
                log.warning("bus: Redis subscription lost; subscribing again", exc_info=True)
            finally:
                with contextlib.suppress(RedisError, OSError, TimeoutError):
                    async with asyncio.timeout(self._timeout_s):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(RETRY_S)

    async def _pump(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=1.0)
            if message is None or message.get("type") != "message":
                continue
            channel = _text(message.get("channel"))
            data = _text(message.get("data"))
            if channel is None or data is None or not channel.startswith(PREFIX):
                continue
            self.deliver(channel.removeprefix(PREFIX), data)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._redis.aclose()


def _text(value: object) -> str | None:
    if isinstance(value, bytes) and len(value) <= MESSAGE_MAX:
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return None


def bus_for(config: RelayConfig) -> Bus:
    if config.bus_backend is BusBackend.MEMORY:
        return MemoryBus()
    if not config.redis_url:
        raise ConfigError('bus_backend "redis" needs redis_url')
    return RedisBus.from_url(config.redis_url, timeout_s=config.redis_timeout_s)
