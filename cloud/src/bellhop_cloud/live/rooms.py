"""Each device's room, for live events that name a device but not its room.

    rooms = Rooms(store, ttl_s=60)
    found = await rooms.of(hotel_id, {"r101-thermostat"})     # {"r101-thermostat": "101"}
    rooms.moved(hotel_id, "r101-thermostat", "102")           # a registry change seen

Looking a device's room up in the database for every event cost more than
delivering the event to a thousand watchers (bench/sse_fanout.py). A hotel's
map is read whole, once, and kept `ttl_s`; concurrent misses share that one
read. The node that applies a hotel's batches sees its registry changes and
updates the map at once (`moved`); a change applied by another node (the
gateway moved meanwhile) shows within `ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Final

import sqlalchemy as sa

from bellhop_cloud.coalesce import Coalesced
from bellhop_cloud.db.schema import devices
from bellhop_cloud.db.store import Store

__all__ = ["Rooms"]

HOTELS_MAX: Final = 10_000  # maps kept at once; past it, the oldest go


class Rooms:
    def __init__(self, store: Store, *, ttl_s: float = 60.0) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._maps: dict[str, tuple[float, dict[str, str | None]]] = {}  # hotel -> (until, map)
        self._loading: Coalesced[str, dict[str, str | None]] = Coalesced()
        self.loads = 0

    async def of(self, hotel_id: str, device_ids: Collection[str]) -> dict[str, str | None]:
        """The room of each of `device_ids` (None: no room, or not a device of the hotel)."""
        if not device_ids:
            return {}
        found = self._maps.get(hotel_id)
        if found is None or found[0] < time.monotonic() or not set(device_ids) <= found[1].keys():
            rooms = await self._load(hotel_id)
        else:
            rooms = found[1]
        return {d: rooms.get(d) for d in device_ids}

    def moved(self, hotel_id: str, device_id: str, room_id: str | None) -> None:
        """A registry change of `device_id` was applied here (None: removed, or no room)."""
        found = self._maps.get(hotel_id)
        if found is not None:
            found[1][device_id] = room_id

    async def _load(self, hotel_id: str) -> dict[str, str | None]:
        return await self._loading.run(hotel_id, lambda: self._read(hotel_id))

    async def _read(self, hotel_id: str) -> dict[str, str | None]:
        query = sa.select(devices.c.device_id, devices.c.room_id).where(
            devices.c.hotel_id == hotel_id
        )
        async with self._store.read() as conn:
            rooms: dict[str, str | None] = {d: r for d, r in await conn.execute(query)}
        self.loads += 1
        if len(self._maps) >= HOTELS_MAX:
            del self._maps[next(iter(self._maps))]
        self._maps[hotel_id] = (time.monotonic() + self._ttl_s, rooms)
        return rooms
