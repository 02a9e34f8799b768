"""Concurrent calls for one key share one run (a burst of identical lookups is one query).

lookups: Coalesced[str, Row] = Coalesced()
row = await lookups.run(key, lambda: read(key))   # a second caller awaits the first run
lookups.forget(lambda key: ...)                    # later callers start a fresh run
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Coalesced"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalesced(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def run(self, key: K, start: Callable[[], Awaitable[V]]) -> V:
        """The result of the run for `key` in progress, or of a new one. A caller that is
        cancelled leaves the run going for the others."""
        pending = self._running.get(key)
        if pending is None:
            pending = asyncio.ensure_future(start())
            self._running[key] = pending
            pending.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(pending)

    def forget(self, which: Callable[[K], bool]) -> None:
        """Runs of these keys are not shared with later callers (what they read may predate
        a change the caller must see)."""
        for key in [key for key in self._running if which(key)]:
            del self._running[key]

    def cancel_all(self) -> None:
        for pending in list(self._running.values()):
            pending.cancel()
        self._running.clear()

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # each waiter got it; not reported again as never retrieved
