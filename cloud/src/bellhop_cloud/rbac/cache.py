"""A short-lived memory of (hotel, access) per user, for the hot read path.

Looking grants up costs a query on every request; a device dashboard polls
the same hotel many times a second. Entries live `ttl_s` seconds (default
1 s) and never past the first expiry among the grants they hold. Every
grant or membership change made through this process clears the cache, so
on one relay a revocation applies at once; on several relay nodes another
node may honour a revoked grant for at most `ttl_s`.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


class AccessCache(Generic[T]):
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[float, T]] = OrderedDict()

    def get(self, user_id: str, hotel_id: str, now: float) -> T | None:
        found = self._entries.get((user_id, hotel_id))
        if found is None:
            return None
        until, value = found
        if until <= now:
            del self._entries[(user_id, hotel_id)]
            return None
        return value

    def put(
        self,
        user_id: str,
        hotel_id: str,
        value: T,
        now: float,
        *,
        first_expiry: datetime | None,
        wall_now: datetime,
    ) -> None:
        if self._ttl_s <= 0:
            return
        until = now + self._ttl_s
        if first_expiry is not None:
            until = min(until, now + (first_expiry - wall_now).total_seconds())
        self._entries[(user_id, hotel_id)] = (until, value)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
