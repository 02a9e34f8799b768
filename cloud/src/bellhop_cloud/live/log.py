"""The in-process event log of one organisation, and the queues of its watchers.

`EventLog` is sans-I/O: fed drafts and a clock, it gives them ids that only
rise, keeps the newest `capacity`, and answers a resume with what it still
holds after an id and whether anything after that id may be gone (a gap).

`Subscription` is one watcher's bounded queue. A watcher that falls
`maxsize` events behind is marked overflowed, its queue is emptied and it is
dropped from the fan-out: memory stays bounded whatever the watcher does.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from bellhop_cloud.live.events import Entry, EventId

__all__ = ["GAP", "EventLog", "Fanout", "Resume", "Subscription"]


class _Gap:
    """A marker in a watcher's queue: events may have been missed here."""

    def __repr__(self) -> str:
        return "GAP"


GAP: Final = _Gap()


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before a log gives it an id."""

    hotel_id: str
    room_id: str | None
    kind: str
    payload: str


@dataclass(frozen=True, slots=True)
class Resume:
    """What a log holds after an id, oldest first; `gap`: some of what followed is gone."""

    gap: bool
    entries: list[Entry]


class EventLog:
    """One organisation's recent events, in id order, at most `capacity` of them.

    `start` is the first id this log could have issued (when its process
    started): an id before it, or one past anything issued, is not this
    log's, so what followed it is unknown and a resume from it is a gap.
    """

    def __init__(self, capacity: int, start: EventId) -> None:
        self.capacity = capacity
        self.start = start
        self.entries: deque[Entry] = deque()
        self.newest: EventId | None = None  # the last id issued, kept or not
        self.evicted: EventId | None = None  # the newest id no longer kept

    def append(self, now_ms: int, drafts: Iterable[Draft]) -> list[Entry]:
        """Give each draft the next id (never below the last one, whatever the clock does)."""
        added: list[Entry] = []
        for draft in drafts:
            last = self.newest or (self.start[0], -1)
            key = (now_ms, 0) if now_ms > last[0] else (last[0], last[1] + 1)
            entry = Entry(key, draft.hotel_id, draft.room_id, draft.kind, draft.payload)
            self.newest = key
            self.entries.append(entry)
            added.append(entry)
        while len(self.entries) > self.capacity:
            self.evicted = self.entries.popleft().key
        return added

    def resume(self, after: EventId) -> Resume:
        """The entries after `after`; on a gap, everything still held."""
        gap = (
            after < self.start
            or self.newest is None
            or after > self.newest
            or (self.evicted is not None and after < self.evicted)
        )
        if gap:
            return Resume(True, list(self.entries))
        found: list[Entry] = []
        for entry in reversed(self.entries):
            if entry.key <= after:
                break
            found.append(entry)
        found.reverse()
        return Resume(False, found)

    def tail(self, count: int) -> list[Entry]:
        """The newest `count` entries, oldest first."""
        if count <= 0:
            return []
        return list(self.entries)[-count:]


class Subscription:
    """One watcher of an organisation (of one of its hotels when `hotel_id` is set)."""

    def __init__(self, org_id: str, hotel_id: str | None, maxsize: int) -> None:
        self.org_id = org_id
        self.hotel_id = hotel_id
        self.maxsize = maxsize
        self.overflowed = False
        self.ended: str | None = None  # why the relay ended it (shutting_down)
        self._items: deque[Entry | _Gap] = deque()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def wants(self, entry: Entry) -> bool:
        return self.hotel_id is None or entry.hotel_id == self.hotel_id

    def offer(self, item: Entry | _Gap) -> bool:
        """Queue `item`; False once this watcher has fallen too far behind (drop it)."""
        if self.overflowed or self.ended is not None:
            return False
        if len(self._items) >= self.maxsize:
            self.overflowed = True
            self._items.clear()
            self._wake.set()
            return False
        self._items.append(item)
        self._wake.set()
        return True

    def end(self, reason: str) -> None:
        if self.ended is None:
            self.ended = reason
            self._items.clear()
            self._wake.set()

    def tick(self) -> None:
        """Wake the watcher with nothing: it looks at its clocks (re-checks, expiry)."""
        self._wake.set()

    async def next(self, timeout: float | None = None) -> Entry | _Gap | str | None:
        """The next queued item, the reason it ended (a str), or None after `timeout` or a
        `tick`. Without a timeout no timer is set per wait: streams rely on `Fanout.tick`,
        one timer for the whole node (a timer per wait cost as much as a delivery)."""
        if not self._items and not self.overflowed and self.ended is None:
            self._wake.clear()
            try:
                if timeout is None:
                    await self._wake.wait()
                else:
                    async with asyncio.timeout(max(timeout, 0.0)):
                        await self._wake.wait()
            except TimeoutError:
                return None
        if self.overflowed:
            return "slow_consumer"
        if self.ended is not None:
            return self.ended
        return self._items.popleft() if self._items else None


class Fanout:
    """The watchers of this process, by organisation."""

    def __init__(self) -> None:
        self.by_org: dict[str, set[Subscription]] = {}

    def __len__(self) -> int:
        return sum(len(subs) for subs in self.by_org.values())

    def add(self, sub: Subscription) -> bool:
        """Register `sub`; True when it is the first of its organisation here."""
        subs = self.by_org.setdefault(sub.org_id, set())
        subs.add(sub)
        return len(subs) == 1

    def remove(self, sub: Subscription) -> bool:
        """Forget `sub`; True when it was the last of its organisation here."""
        subs = self.by_org.get(sub.org_id)
        if subs is None or sub not in subs:
            return False
        subs.discard(sub)
        if subs:
            return False
        del self.by_org[sub.org_id]
        return True

    def deliver(self, org_id: str, entries: Iterable[Entry]) -> None:
        subs = self.by_org.get(org_id)
        if not subs:
            return
        for entry in entries:
            for sub in [s for s in subs if s.wants(entry)]:
                if not sub.offer(entry):
                    subs.discard(sub)  # its stream sees `overflowed` and ends
        if not subs:
            self.by_org.pop(org_id, None)

    def gap(self, org_id: str) -> None:
        """Tell the organisation's watchers that events may have been missed."""
        for sub in list(self.by_org.get(org_id, ())):
            if not sub.offer(GAP):
                self.remove(sub)

    def tick(self) -> None:
        """Wake every watcher of this process (their streams look at their clocks)."""
        for subs in self.by_org.values():
            for sub in subs:
                sub.tick()

    def end_all(self, reason: str) -> None:
        for subs in self.by_org.values():
            for sub in subs:
                sub.end(reason)
        self.by_org.clear()
