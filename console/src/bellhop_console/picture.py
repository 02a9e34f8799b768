"""A hotel's room grid held in memory and kept current by the hotel's live feed.

The grid page used to read every device of the hotel on every load. A `Picture`
holds one full read (rooms, devices, active alerts) and the feed (`live.py`)
applies each event of the hotel's SDK stream to it, so a page renders from
memory. It is served only while it is known to be complete:

- the read started once the feed was following the hotel (an event arrived, or the
  stream had been open `SETTLE_S`), so no change fell between the read and the stream;
- no `Gap` since (a gap, a restarted feed or an unknown device drops it: the next page
  reads again), and the read is younger than `MAX_AGE_S` (bounded staleness even if
  an event were lost without a gap).

Events that arrive while a read is under way are applied again on top of it, in order.
Each room's tile (HTML) and its part of the page's live data (JSON) are built once
and again only when one of its devices or alerts changes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

from bellhop_sdk import BellhopClient, Device, Event, Freshness, Gap, Hotel, Path, Room
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from bellhop_console.rooms import Tile, tile_facts
from bellhop_console.served import Served
from bellhop_console.urls import url_path

__all__ = ["MAX_AGE_S", "ROOMS_MAX_AGE_S", "Grid", "Picture"]

MAX_AGE_S: Final = 60.0  # a live picture is read afresh at least this often
ROOMS_MAX_AGE_S: Final = 300.0  # rooms and floors change rarely: read at most this often
NO_FLOOR: Final = "Other rooms"


@dataclass(frozen=True)
class Grid:
    """What the rooms page shows: tiles by floor (HTML), the page's live data, the banner."""

    floors: list[tuple[str, list[Markup]]]
    live_data: Markup
    alerts: int
    served: Served


def _json(value: Any) -> Markup:
    # As Jinja's `tojson`: safe inside a <script> element (<, >, &, ' escaped).
    return htmlsafe_json_dumps(value, sort_keys=True, separators=(",", ":"))


def _fmt(value: float) -> str:
    return f"{value:.1f}°"


def tile_html(hotel_id: str, tile: Tile) -> Markup:
    """A tile as `templates/hotel.html` showed it (and `static/console.js` updates it)."""
    room = tile.room
    temp = ""
    if tile.temperature is not None:
        temp = _fmt(tile.temperature)
    if tile.setpoint is not None:
        temp += f" → {_fmt(tile.setpoint)}"
    door = "door open" if tile.door_open else "door shut" if tile.door_open is False else ""
    return Markup(
        '<li class="tile {state}" data-room="{rid}" data-alarms="{alarms}">\n'
        '  <a href="{href}">\n'
        '    <span class="room-name">{name}</span>\n'
        '    <span class="state" data-f="state">{state}</span>\n'
        '    <span class="facts">\n'
        '      <span data-f="temp">{temp}</span>\n'
        '      <span data-f="door">{door}</span>\n'
        '      <span data-f="alarms">{alarms_text}</span>\n'
        '      <span data-f="offline">{offline}</span>\n'
        '      <span data-f="battery">{battery}</span>\n'
        "    </span>\n"
        "  </a>\n"
        "</li>"
    ).format(
        state=tile.state,
        rid=room.room_id,
        href=url_path("hotels", hotel_id, "rooms", room.room_id),
        alarms=tile.alarms,
        name=room.name,
        temp=temp,
        door=door,
        alarms_text=f"{tile.alarms} alarm(s)" if tile.alarms else "",
        offline=f"{tile.offline} offline" if tile.offline else "",
        battery="battery low" if tile.battery_low else "",
    )


class Picture:
    """One hotel's rooms, devices and active alerts, with tiles built on demand."""

    def __init__(self, hotel_id: str) -> None:
        self.hotel_id = hotel_id
        self.lock = asyncio.Lock()  # one read at a time; the pages waiting share it
        self.rooms: list[Room] = []
        self.rooms_at = -math.inf
        self.devices: dict[str, Device] = {}
        self.alerts: dict[str, str | None] = {}  # active alert id -> its room
        self.path = Path.LAN
        self.loaded_at = -math.inf  # monotonic: when the read it holds started
        self.current = False
        self._pending: list[Event] | None = None  # events seen while a read is under way
        self._order: list[tuple[str, list[str]]] = []  # floors' labels and room ids
        self._room_of: dict[str, str] = {}  # device id -> room id
        self._tiles: dict[str, tuple[Markup, Markup]] = {}  # room -> (tile HTML, live data JSON)

    def usable(self, now: float) -> bool:
        return self.current and now - self.loaded_at < MAX_AGE_S

    def invalidate(self) -> None:
        self.current = False

    # -- reads ---------------------------------------------------------------------------
    async def load(self, client: BellhopClient, *, following_since: float | None) -> None:
        """Read the hotel afresh with `client`; current if the feed followed it since
        before the read started (`following_since`, monotonic; None: not following)."""
        started = time.monotonic()
        need_rooms = started - self.rooms_at >= ROOMS_MAX_AGE_S or not self.rooms
        self._pending = []
        self.current = False
        try:
            devices, alerts, rooms = await asyncio.gather(
                client.devices(self.hotel_id),
                client.alerts(self.hotel_id, active_only=True),
                client.rooms(self.hotel_id) if need_rooms else _none(),
            )
        finally:
            pending, self._pending = self._pending, None
        if rooms is not None:
            self.rooms, self.rooms_at = rooms, started
        self.devices = {d.device_id: d for d in devices}
        self.alerts = {a.alert_id: a.room_id for a in alerts if a.state.value != "cleared"}
        if devices:
            self.path = devices[0].freshness.path
        self._index()
        for event in pending:
            self._apply(event)
        self.loaded_at = started
        self.current = following_since is not None and started >= following_since

    def _index(self) -> None:
        self._tiles.clear()
        self._room_of = {d.device_id: d.room_id for d in self.devices.values() if d.room_id}
        grouped: dict[int | None, list[str]] = {}
        for room in sorted(self.rooms, key=lambda r: r.room_id):
            grouped.setdefault(room.floor, []).append(room.room_id)
        order = sorted(grouped, key=lambda f: (f is None, f or 0))
        self._order = [(NO_FLOOR if f is None else f"Floor {f}", grouped[f]) for f in order]

    # -- events --------------------------------------------------------------------------
    def apply(self, item: Event | Gap) -> None:
        """One item of the hotel's stream: a change applied, or the picture dropped."""
        if isinstance(item, Gap):
            self.current = False
            return
        if self._pending is not None:
            self._pending.append(item)
        self.path = item.path
        self._apply(item)

    def _apply(self, event: Event) -> None:
        data: Mapping[str, Any] = event.data if isinstance(event.data, Mapping) else {}
        if event.kind == "alert":
            alert_id = str(data.get("alert_id"))
            room = data.get("room_id") or event.room_id
            before = self.alerts.get(alert_id, "-")
            if data.get("state") == "cleared":
                self.alerts.pop(alert_id, None)
            else:
                self.alerts[alert_id] = room
            for r in (before, room):
                if isinstance(r, str):
                    self._tiles.pop(r, None)
            return
        if event.kind not in ("state", "device"):
            return  # commands and desired state do not change a tile
        device_id = str(data.get("device_id"))
        device = self.devices.get(device_id)
        if device is None or data.get("removed"):
            self.current = False  # a device the read did not have: read again
            return
        if event.kind == "state":
            updated = data.get("updated_at")
            if (
                isinstance(updated, datetime)
                and device.reported_at is not None
                and updated < device.reported_at
            ):
                return  # older than what the read holds
            values = data.get("values")
            reported = {**device.reported, **(values if isinstance(values, Mapping) else {})}
            at = updated if isinstance(updated, datetime) else device.reported_at
            device = replace(device, reported=reported, reported_at=at)
        else:
            online = bool(data.get("online"))
            seen = data.get("last_seen")
            last_seen = seen if isinstance(seen, datetime) else device.last_seen
            since = None if online else (last_seen or event.at)
            freshness = Freshness(event.path, last_seen or event.at if since else event.at, since)
            device = replace(device, online=online, last_seen=last_seen, freshness=freshness)
        self.devices[device_id] = device
        room = self._room_of.get(device_id)
        if room is not None:
            self._tiles.pop(room, None)

    # -- the page ------------------------------------------------------------------------
    def grid(self, hotel: Hotel) -> Grid:
        by_room: dict[str, list[Device]] = {}
        missing = [r.room_id for r in self.rooms if r.room_id not in self._tiles]
        if missing:
            wanted = set(missing)
            for device in self.devices.values():
                if device.room_id in wanted:
                    by_room.setdefault(device.room_id, []).append(device)
            alarms: dict[str, int] = {}
            for room_id in self.alerts.values():
                if room_id in wanted:
                    alarms[room_id] = alarms.get(room_id, 0) + 1
            rooms = {r.room_id: r for r in self.rooms}
            for room_id in missing:
                tile = tile_facts(rooms[room_id], by_room.get(room_id, []), alarms.get(room_id, 0))
                html = tile_html(self.hotel_id, tile)
                self._tiles[room_id] = (html, _json(room_id) + ":" + _json(tile.device_json()))
        floors = [(label, [self._tiles[r][0] for r in ids]) for label, ids in self._order]
        rooms_json = Markup(",").join(self._tiles[r][1] for _, ids in self._order for r in ids)
        live = Markup('{"alerts":%s,"rooms":{%s}}') % (_json(self.alerts), rooms_json)
        return Grid(floors, live, len(self.alerts), self.served(hotel))

    def served(self, hotel: Hotel) -> Served:
        """Current as of now for the devices heard (the feed applied every change since
        the read); as of their last contact, and stale since, for the others."""
        offline = [d.freshness for d in self.devices.values() if not d.online]
        now = datetime.now(UTC) if self.current else _oldest(self.devices.values(), hotel)
        stale = [f.stale_since for f in offline if f.stale_since is not None]
        return Served(
            self.path.value,
            min([now, *(f.as_of for f in offline)]),
            min(stale) if stale else None,
        )


def _oldest(devices: Iterable[Device], hotel: Hotel) -> datetime:
    return min((d.freshness.as_of for d in devices), default=hotel.freshness.as_of)


async def _none() -> None:
    return None
