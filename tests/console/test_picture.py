"""The rooms page's picture without sockets: a read, the events applied to it, the tiles
and live data it renders, and when it stops being current."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import jinja2
import pytest
from bellhop_console.picture import MAX_AGE_S, Picture
from bellhop_console.rooms import floors
from bellhop_sdk import (
    Alert,
    AlertState,
    BellhopClient,
    Device,
    Event,
    Freshness,
    Gap,
    Hotel,
    Path,
    Room,
)
from bellhop_sdk.models import alert_data

H = "htl_pic"
T0 = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
FRESH = Freshness(Path.LAN, T0)
HOTEL = Hotel(H, "Picture hotel", FRESH)
# The template the tiles used to come from, to check the picture renders them alike.
OLD_TILES = jinja2.Environment(autoescape=True).from_string(
    """{% for floor, tiles in floors %}{{ floor }}|{% for t in tiles %}<li class="tile {{ t.state }}" data-room="{{ t.room.room_id }}" data-alarms="{{ t.alarms }}">
  <a href="/hotels/{{ hotel_id }}/rooms/{{ t.room.room_id }}">
    <span class="room-name">{{ t.room.name }}</span>
    <span class="state" data-f="state">{{ t.state }}</span>
    <span class="facts">
      <span data-f="temp">{% if t.temperature is not none %}{{ '%.1f' % t.temperature }}°{% endif %}{% if t.setpoint is not none %} → {{ '%.1f' % t.setpoint }}°{% endif %}</span>
      <span data-f="door">{% if t.door_open %}door open{% elif t.door_open is false %}door shut{% endif %}</span>
      <span data-f="alarms">{% if t.alarms %}{{ t.alarms }} alarm(s){% endif %}</span>
      <span data-f="offline">{% if t.offline %}{{ t.offline }} offline{% endif %}</span>
      <span data-f="battery">{% if t.battery_low %}battery low{% endif %}</span>
    </span>
  </a>
</li>{% endfor %}{% endfor %}"""
)


def room(room_id: str, floor: int | None, name: str | None = None) -> Room:
    return Room(H, room_id, name or room_id, floor, FRESH)


def device(device_id: str, room_id: str, kind: str, online: bool = True, **reported: Any) -> Device:
    return Device(H, device_id, room_id, kind, online, T0, reported, FRESH, reported_at=T0)


def alert(alert_id: str, room_id: str, state: AlertState = AlertState.RAISED) -> Alert:
    return Alert(H, alert_id, "breach", "critical", state, None, room_id, "forced", T0, FRESH)


ROOMS = [room("101", 1), room("102", 1), room("201", 2), room("lobby", None, "<b>Lobby</b>")]
DEVICES = [
    device("r101-thermostat", "101", "thermostat", temperature=20.5, setpoint=21.0),
    device("r101-light", "101", "light", on=False),
    device("r101-door", "101", "door_sensor", open=False),
    device("r102-light", "102", "light", on=True),
    device("r201-env", "201", "environment_sensor", False, battery=10),
]
ALERTS = [alert("a1", "102")]


class FakeClient:
    """The three reads a picture makes, from lists the test changes; `gate` holds them."""

    def __init__(self) -> None:
        self.rooms_, self.devices_, self.alerts_ = list(ROOMS), list(DEVICES), list(ALERTS)
        self.gate: asyncio.Event | None = None
        self.reads: list[str] = []

    async def _wait(self, what: str) -> None:
        self.reads.append(what)
        if self.gate is not None:
            await self.gate.wait()

    async def devices(self, hotel_id: str) -> list[Device]:
        await self._wait("devices")
        return list(self.devices_)

    async def alerts(self, hotel_id: str, *, active_only: bool) -> list[Alert]:
        assert active_only
        await self._wait("alerts")
        return list(self.alerts_)

    async def rooms(self, hotel_id: str) -> list[Room]:
        await self._wait("rooms")
        return list(self.rooms_)


def client(fake: FakeClient) -> BellhopClient:
    return cast("BellhopClient", fake)


def state(device_id: str, at: datetime, **values: Any) -> Event:
    data = {"device_id": device_id, "values": values, "updated_at": at}
    return Event("state", ("state", device_id), H, None, at, data, Path.LAN)


def status(device_id: str, online: bool, at: datetime) -> Event:
    data = {"device_id": device_id, "online": online, "last_seen": at}
    return Event("device", ("device", device_id), H, None, at, data, Path.LAN)


def alert_event(a: Alert) -> Event:
    return Event("alert", ("alert", a.alert_id), H, a.room_id, T0, alert_data(a), Path.LAN)


def tiles(picture: Picture) -> dict[str, str]:
    html = "".join(str(t) for _, ts in picture.grid(HOTEL).floors for t in ts)
    found = re.findall(r'<li class="tile (\w+)" data-room="([^"]+)"', html)
    return {r: s for s, r in found}


def live(picture: Picture) -> dict[str, Any]:
    return cast("dict[str, Any]", json.loads(str(picture.grid(HOTEL).live_data)))


async def loaded(fake: FakeClient | None = None, *, following: bool = True) -> Picture:
    picture = Picture(H)
    await picture.load(client(fake or FakeClient()), following_since=0.0 if following else None)
    return picture


async def test_the_tiles_are_those_the_template_rendered() -> None:
    picture = await loaded()
    grid = picture.grid(HOTEL)
    ours = "".join(f"{label}|" + "".join(str(t) for t in ts) for label, ts in grid.floors)
    theirs = OLD_TILES.render(floors=floors(ROOMS, DEVICES, ALERTS), hotel_id=H)
    assert ours == theirs
    assert "&lt;b&gt;Lobby&lt;/b&gt;" in ours  # a room's name is text, never markup
    assert [label for label, _ in grid.floors] == ["Floor 1", "Floor 2", "Other rooms"]
    assert tiles(picture) == {"101": "vacant", "102": "alarm", "201": "offline", "lobby": "vacant"}
    assert grid.alerts == 1
    data = live(picture)
    assert data["alerts"] == {"a1": "102"}
    assert data["rooms"]["101"]["r101-thermostat"] == {
        "kind": "thermostat", "online": True, "reported": {"setpoint": 21.0, "temperature": 20.5},
    }  # fmt: skip
    assert data["rooms"]["lobby"] == {}


async def test_live_data_cannot_close_its_script_element() -> None:
    fake = FakeClient()
    fake.devices_ = [device("r101-light", "101", "light", note="</script><script>alert(1)")]
    text = str((await loaded(fake)).grid(HOTEL).live_data)
    assert "<" not in text
    assert json.loads(text)["rooms"]["101"]["r101-light"]["reported"]["note"].startswith("</")


async def test_events_change_the_tiles_they_touch() -> None:
    picture = await loaded()
    assert picture.usable(picture.loaded_at + 1)
    picture.apply(state("r101-light", T0 + timedelta(seconds=1), on=True))
    picture.apply(state("r101-door", T0 + timedelta(seconds=1), open=True))
    picture.apply(status("r201-env", True, T0 + timedelta(seconds=1)))
    picture.apply(alert_event(alert("a1", "102", AlertState.CLEARED)))
    picture.apply(alert_event(alert("a2", "lobby")))
    assert tiles(picture) == {
        "101": "occupied",
        "102": "occupied",
        "201": "vacant",
        "lobby": "alarm",
    }
    html = "".join(str(t) for _, ts in picture.grid(HOTEL).floors for t in ts)
    assert "door open" in html
    assert live(picture)["alerts"] == {"a2": "lobby"}
    assert live(picture)["rooms"]["101"]["r101-light"]["reported"] == {"on": True}
    assert picture.usable(picture.loaded_at + 1)  # events keep it current


async def test_a_report_older_than_the_read_is_ignored() -> None:
    picture = await loaded()
    picture.apply(state("r102-light", T0 - timedelta(seconds=1), on=False))
    assert tiles(picture)["102"] == "alarm"
    assert live(picture)["rooms"]["102"]["r102-light"]["reported"] == {"on": True}


@pytest.mark.parametrize(
    "item",
    [
        Gap("slow_consumer", T0, Path.LAN),
        state("r999-new", T0, on=True),
        Event("device", ("device", "x"), H, "101", T0, {"device_id": "r101-light", "removed": True},
              Path.CLOUD),
    ],
    ids=["gap", "unknown-device", "removed-device"],
)  # fmt: skip
async def test_what_it_cannot_follow_makes_it_read_again(item: Event | Gap) -> None:
    picture = await loaded()
    picture.apply(item)
    assert not picture.usable(picture.loaded_at + 1)


async def test_current_only_when_following_since_before_the_read_and_for_a_while() -> None:
    assert not (await loaded(following=False)).usable(0)
    picture = Picture(H)
    await picture.load(client(FakeClient()), following_since=float("inf"))
    assert not picture.usable(picture.loaded_at)  # the feed followed only after the read
    picture = await loaded()
    assert picture.usable(picture.loaded_at + MAX_AGE_S - 1)
    assert not picture.usable(picture.loaded_at + MAX_AGE_S)  # bounded staleness


async def test_events_during_a_read_are_applied_on_top_of_it() -> None:
    picture = await loaded()
    fake = FakeClient()
    fake.gate = asyncio.Event()
    reading = asyncio.create_task(picture.load(client(fake), following_since=0.0))
    while "devices" not in fake.reads:
        await asyncio.sleep(0)
    # The read answers what the gateway held before these events reached the console.
    picture.apply(state("r101-light", T0 + timedelta(seconds=2), on=True))
    picture.apply(alert_event(alert("a3", "201")))
    fake.gate.set()
    await reading
    assert live(picture)["rooms"]["101"]["r101-light"]["reported"] == {"on": True}
    assert live(picture)["alerts"] == {"a1": "102", "a3": "201"}
    assert picture.usable(picture.loaded_at)


async def test_rooms_are_read_again_only_when_old() -> None:
    fake = FakeClient()
    picture = await loaded(fake)
    await picture.load(client(fake), following_since=0.0)
    assert fake.reads.count("rooms") == 1
    assert fake.reads.count("devices") == 2
    picture.rooms_at -= 10_000
    await picture.load(client(fake), following_since=0.0)
    assert fake.reads.count("rooms") == 2


async def test_the_banner_is_current_when_live_and_stale_for_an_offline_device() -> None:
    picture = await loaded()
    assert picture.served(HOTEL).as_of == T0  # the offline sensor: as of its last contact
    later = T0 + timedelta(minutes=5)
    picture.apply(status("r201-env", True, later))
    served = picture.served(HOTEL)
    assert served.path == "lan"
    assert served.as_of > later  # every device heard and every change applied: now
    assert served.stale_since is None
    picture.apply(status("r101-light", False, later))
    served = picture.served(HOTEL)
    assert served.as_of == later
    assert served.stale_since == later
