"""Re-checks of live-event streams: one per watcher's session and scope on this node.

    rechecks = Rechecks(every_s=5)
    rechecks.join(key, fetch, sub, apply)   # key: (session, account, "hotel", hotel_id)
    ...
    rechecks.leave(key, sub)
    await rechecks.close()

A stream may only go on while its session is live and its grants still reach what
it follows, so both are looked at again every `every_s`. Streams of one session
following the same hotel (or organisation) need the same answer: a manager's console
and phone, a dashboard with many panels. One check per such group on this node is
shared by all its streams: `fetch` (the session and the grants, from the store or
its caches) runs once per period, `apply` turns its result into each stream's
verdict (and refreshes the rooms it shows). A verdict ends that stream's
subscription with the reason, which wakes the stream to send its `end`.

The checks run beside the streams, never in their way: a fetch that waits for the
store holds back no event. A store that stays away ends the group's streams
`unavailable` after `FAILURES_MAX` failed checks in a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Final

from bellhop_cloud.live.log import Subscription

__all__ = ["FAILURES_MAX", "Apply", "Fetch", "Rechecks"]

log = logging.getLogger(__name__)

FAILURES_MAX: Final = 3  # consecutive failed checks before the group's streams end

Fetch = Callable[[], Coroutine[Any, Any, Any]]
Apply = Callable[[Any], "str | None"]  # the fetched answer -> None, or why the stream ends


class _Group:
    __slots__ = ("failures", "fetch", "members", "task")

    def __init__(self, fetch: Fetch) -> None:
        self.fetch = fetch
        self.members: dict[Subscription, Apply] = {}
        self.failures = 0
        self.task: asyncio.Task[None] | None = None


class Rechecks:
    """The periodic checks of this node's streams, one task per group while it has streams."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._groups: dict[Hashable, _Group] = {}
        self._closed = False

    def __len__(self) -> int:
        """Groups being checked now."""
        return len(self._groups)

    def join(self, key: Hashable, fetch: Fetch, sub: Subscription, apply: Apply) -> None:
        """Check `sub`'s stream with its group's: `key` names the session and scope, for
        which `fetch` gives one answer; `apply` gives this stream's verdict on it."""
        if self._closed:
            sub.end("shutting_down")
            return
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(fetch)
            group.task = asyncio.create_task(self._run(key, group), name="live-events-recheck")
        group.members[sub] = apply

    def leave(self, key: Hashable, sub: Subscription) -> None:
        """`sub`'s stream has ended; the group's task stops with its last stream."""
        group = self._groups.get(key)
        if group is None or group.members.pop(sub, None) is None or group.members:
            return
        del self._groups[key]
        if group.task is not None:
            group.task.cancel()

    async def close(self) -> None:
        """Stop every check (the node is stopping; its streams are ended by `LiveEvents`)."""
        self._closed = True
        tasks = [g.task for g in self._groups.values() if g.task is not None]
        self._groups.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, key: Hashable, group: _Group) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                found = await group.fetch()
            except Exception:  # the store is away: fail closed if it stays away
                group.failures += 1
                log.warning("live events: a re-check failed", exc_info=True)
                if group.failures < FAILURES_MAX:
                    continue
                self._end(key, group, lambda _found: "unavailable", None)
                return
            group.failures = 0
            if self._end(key, group, None, found):
                return

    def _end(self, key: Hashable, group: _Group, verdict: Apply | None, found: Any) -> bool:
        """End the members whose verdict says so; True when none is left."""
        for sub, apply in list(group.members.items()):
            try:
                reason = (verdict or apply)(found)
            except Exception:  # a bug in a verdict must not spare the others their check
                log.exception("live events: a re-check's verdict failed")
                reason = "unavailable"
            if reason is not None:
                sub.end(reason)
                del group.members[sub]
        if group.members:
            return False
        if self._groups.get(key) is group:
            del self._groups[key]
        return True
