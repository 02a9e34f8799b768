"""Fan-out of live events to watchers (the gRPC WatchEvents stream).

Publishing never blocks ingest: each watcher has a bounded queue, and a
watcher that falls behind is dropped with a clear reason instead of slowing
the hotel down; it can reconnect and re-read state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

from bellhop_edge.core.model import LiveEvent

__all__ = ["EventBus", "Lagging", "Subscription"]

QUEUE_MAX: Final = 10_000


class Lagging(Exception):
    """The watcher did not keep up and was disconnected."""


class _Lagging:
    """Put in a watcher's queue in place of what it missed."""


_LAGGING: Final = _Lagging()


@dataclass(eq=False)
class Subscription:
    room_id: str | None
    queue: asyncio.Queue[LiveEvent | _Lagging] = field(
        default_factory=lambda: asyncio.Queue(maxsize=QUEUE_MAX)
    )

    async def __aiter__(self) -> AsyncIterator[LiveEvent]:
        while True:
            item = await self.queue.get()
            if isinstance(item, _Lagging):
                raise Lagging("too slow to follow live events; reconnect and resync")
            yield item


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.dropped_watchers = 0

    @property
    def active(self) -> bool:
        return bool(self._subscriptions)

    def subscribe(self, room_id: str | None = None) -> Subscription:
        subscription = Subscription(room_id)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: LiveEvent) -> None:
        for sub in list(self._subscriptions):
            if sub.room_id is not None and sub.room_id != event.room_id:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscriptions.discard(sub)
                self.dropped_watchers += 1
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(_LAGGING)
