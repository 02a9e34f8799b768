"""Ids in the console's links and form actions are each one percent-encoded path segment,
so an id a gateway chose (`x/../../../login`, `r1?x=1`, `r1#x`) cannot make a link lead
to another page. The SDK refuses such ids as arguments, so the helper, a tile and the
templates are rendered here directly."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from bellhop_console import ConsoleConfig
from bellhop_console.picture import tile_html
from bellhop_console.rooms import tile_facts
from bellhop_console.urls import segment, url_path
from bellhop_console.web import Console
from bellhop_sdk import Alert, AlertState, Device, Freshness, Hotel, Path, Room

T0 = datetime(2020, 1, 1, 12, 0, tzinfo=UTC)
FRESH = Freshness(Path.LAN, T0)
HOSTILE = ["x/../../../login", "r1?x=1", "r1#x", "a b&c", "ä%2F", "<q>\"'"]
# What a browser's encodeURIComponent makes of each (the script builds the same links).
ENCODED = ["x%2F..%2F..%2F..%2Flogin", "r1%3Fx%3D1", "r1%23x", "a%20b%26c", "%C3%A4%252F",
           "%3Cq%3E%22'"]  # fmt: skip


@pytest.mark.parametrize(("raw", "encoded"), list(zip(HOSTILE, ENCODED, strict=True)))
def test_an_id_is_one_encoded_segment(raw: str, encoded: str) -> None:
    assert segment(raw) == encoded
    assert url_path("hotels", "h1", "rooms", raw) == f"/hotels/h1/rooms/{encoded}"


def hrefs(html: str) -> list[str]:
    """Every link and form target of a page, HTML entities undone."""
    found = re.findall(r'(?:href|action|data-live)="([^"]*)"', html)
    return [f.replace("&#39;", "'").replace("&amp;", "&") for f in found]


def assert_one_segment_each(targets: list[str]) -> None:
    for target in targets:
        if target.startswith("/hotels/"):
            assert "?" not in target.removesuffix("?all=1"), target
            assert "#" not in target, target
            assert target.split("?")[0].count("/") <= 5, target


@pytest.mark.parametrize("room_id", HOSTILE)
def test_a_tile_links_to_its_room_whatever_its_id(room_id: str) -> None:
    room = Room("h 1", room_id, "Room", 1, FRESH)
    device = Device("h 1", "d1", room_id, "light", True, T0, {"on": True}, FRESH)
    html = tile_html("h 1", tile_facts(room, [device], 0))
    (target,) = hrefs(str(html))
    assert target == f"/hotels/h%201/rooms/{segment(room_id)}"


@pytest.mark.parametrize("bad", HOSTILE)
def test_the_pages_encode_every_id_they_put_in_a_url(bad: str) -> None:
    console = Console(ConsoleConfig(cloud_url="http://relay.example").validate())
    env = console.templates.env
    hotel = Hotel(f"h-{bad}", "Hotel", FRESH, org_id="o1")
    alert = Alert(hotel.hotel_id, bad, "breach", "critical", AlertState.RAISED, bad, bad, "m",
                  T0, FRESH)  # fmt: skip
    room = Room(hotel.hotel_id, bad, "Room", 1, FRESH)
    device = Device(hotel.hotel_id, bad, bad, "light", True, T0, {"on": True}, FRESH)
    common = {
        "session": SimpleNamespace(who="someone"),
        "csrf_token": "t",
        "served": None,
        "hotel": hotel,
        "flash": None,
        "may_command": True,
    }
    alerts = env.get_template("alerts.html").render(
        **common, title="Alerts", alerts=[alert], raised=AlertState.RAISED
    )
    hotels = env.get_template("hotels.html").render(**common, title="Hotels", rows=[(hotel, 0)])
    room_page = env.get_template("room.html").render(
        **common, title="Room", room=room, tile=tile_facts(room, [device], 1),
        rows=[(device, None, [])], alerts=[alert], controls={"light": []},
    )  # fmt: skip
    h, x = segment(hotel.hotel_id), segment(bad)
    assert f"/hotels/{h}/rooms/{x}" in hrefs(alerts)
    assert f"/hotels/{h}/alerts/{x}/ack" in hrefs(alerts)
    assert f"/hotels/{h}/live" in hrefs(alerts)
    assert f"/hotels/{h}" in hrefs(hotels)
    assert f"/hotels/{h}/devices/{x}/command" in hrefs(room_page)
    for page in (alerts, hotels, room_page):
        assert_one_segment_each(hrefs(page))
