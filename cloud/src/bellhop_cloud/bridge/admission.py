"""Admission: at most so many handshakes worked on at once, the others in arrival order.

    admission = Admission(100)
    if await admission.enter():     # False once closed (the relay is stopping)
        try: ...                    # the handshake
        finally: admission.leave()  # the slot passes to the next in line

Under a reconnect storm the relay finishes the handshakes it has taken well inside
their timeout instead of slowing all of them down together (docs/bridge.md).
"""

from __future__ import annotations

import asyncio
import collections

__all__ = ["Admission"]


class Admission:
    """At most `limit` holders at a time; the others wait in arrival order.

    `close()` turns every waiter (and anyone who comes later) away.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the admission limit must be at least 1")
        self.limit = limit
        self.busy = 0
        self.closed = False
        self._waiters: collections.deque[asyncio.Future[bool]] = collections.deque()

    @property
    def waiting(self) -> int:
        return sum(not f.done() for f in self._waiters)

    async def enter(self) -> bool:
        """True once admitted (call `leave` later); False if closed."""
        if self.closed:
            return False
        while self._waiters and self._waiters[0].done():  # gave up waiting
            self._waiters.popleft()
        # A waiter still waiting means no slot is free.
        if self.busy < self.limit and not self._waiters:
            self.busy += 1
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.leave()  # admitted as it was cancelled: pass the slot on
            raise

    def leave(self) -> None:
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(True)  # the slot passes to it
                return
        self.busy -= 1

    def close(self) -> None:
        self.closed = True
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(False)
