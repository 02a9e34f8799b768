"""Device pages: the JSON the database writes is the JSON the API wrote before.

A page is spliced from `devices.json_head`, which the database writes with
each row (db/schema.py), and from `stale`, added by the page query; the
single-device route still builds a dict in Python and encodes it with
orjson. Every page must be those single-device bodies, byte for byte, on
both backends: times, escapes, nulls, `state` as stored, cursors.
"""

from __future__ import annotations

import re
import urllib.parse
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from bellhop_cloud import hotels
from bellhop_cloud.api.routes_hotels import PageQuery, encode_cursor, plain_page_query

from tests.cloud.support import Account, Api, expect

LONG_AGO = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # whole second
LATER = datetime(2031, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)  # fresh for years; trailing zeros
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z")


def tricky_devices() -> list[hotels.Device]:
    """Every kind of value the JSON of a device can hold."""
    # Ids travel in paths, where control characters are refused (api/boundary.py):
    # those are in `kind`, which every body carries too.
    ids = ['dev-"q"', "dev-\\back", "dév-é", "dev-😀", "dev-\u2028"]
    ids += [f"dev-{n:03d}" for n in range(len(ids), 23)]
    seen = [
        None,
        LONG_AGO,
        LATER,
        LONG_AGO.replace(microsecond=1),
        LATER.replace(microsecond=0),
        LONG_AGO.replace(microsecond=999999),
    ]
    states: list[dict[str, object]] = [
        {},
        {"a": [1, None, "x"]},
        {"t": 21.5, "s": 'é\n"', "big": 1e300, "neg": -0.0},
        {"nested": {"k": [True, False]}},
    ]
    return [
        hotels.Device(
            device_id=device_id,
            kind=["thermostat", 'sen"sor', "lock\\x\x01ctl", "ünï\ttab\n"][n % 4],
            room_id=[None, "r1", "r2", "r3", 'r"q'][n % 5],
            firmware=[None, "1.0", "2.0-β"][n % 3],
            online=bool(n % 2),
            state=states[n % 4],
            last_seen=seen[n % 6],
        )
        for n, device_id in enumerate(ids)
    ]


async def seeded_hotel(api: Api) -> tuple[Account, str, str, list[hotels.Device]]:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    devices = tricky_devices()
    async with api.relay.store.write() as conn:
        await hotels.upsert_rooms(
            conn, hotel_id, [hotels.Room(r, r, 1, LONG_AGO) for r in ("r1", "r2", "r3", 'r"q')]
        )
        await hotels.upsert_devices(conn, hotel_id, devices)
    return owner, org_id, hotel_id, devices


async def single_bodies(
    api: Api, who: Account, hotel_id: str, devices: list[hotels.Device]
) -> dict[str, bytes]:
    """Each device as the single-device route encodes it (a dict, in Python)."""
    bodies = {}
    for device in devices:
        path = f"/v1/hotels/{hotel_id}/devices/{urllib.parse.quote(device.device_id, safe='')}"
        response = await api.http.get(path, headers=who.headers)
        assert response.status_code == 200, response.text
        bodies[device.device_id] = response.content
    return bodies


def page_body(items: list[bytes], next_cursor: str | None) -> bytes:
    return b'{"items":[%s],"next_cursor":%s}' % (b",".join(items), orjson.dumps(next_cursor))


async def page(api: Api, who: Account, hotel_id: str, query: str = "") -> bytes:
    url = f"/v1/hotels/{hotel_id}/devices" + (f"?{query}" if query else "")
    response = await api.http.get(url, headers=who.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.content


async def test_pages_are_the_single_device_bodies_byte_for_byte(api: Api) -> None:
    owner, _, hotel_id, devices = await seeded_hotel(api)
    singles = await single_bodies(api, owner, hotel_id, devices)
    everything = await page(api, owner, hotel_id, "limit=500")
    order = [item["device_id"] for item in orjson.loads(everything)["items"]]
    assert sorted(order) == sorted(singles)
    assert everything == page_body([singles[d] for d in order], None)

    # Paging with the cursors the pages give, with a plain and an escaped query.
    for escape in (False, True):
        seen: list[str] = []
        cursor = None
        while True:
            query = "limit=4" + (f"&cursor={cursor}" if cursor else "")
            if escape:
                query = query.replace("limit", "l%69mit")
            body = await page(api, owner, hotel_id, query)
            items = [item["device_id"] for item in orjson.loads(body)["items"]]
            cursor = encode_cursor(items[-1]) if len(items) == 4 else None
            assert body == page_body([singles[d] for d in items], cursor)
            seen += items
            if cursor is None:
                break
        assert seen == order

    # A cursor in the middle, one room, and a page that ends exactly at the limit.
    after = order[10]
    body = await page(api, owner, hotel_id, f"cursor={encode_cursor(after)}&limit=500")
    assert body == page_body([singles[d] for d in order[11:]], None)
    in_r2 = [d.device_id for d in devices if d.room_id == "r2"]
    body = await page(api, owner, hotel_id, "room_id=r2")
    assert body == page_body([singles[d] for d in order if d in in_r2], None)
    body = await page(api, owner, hotel_id, f"room_id=r2&limit={len(in_r2)}")
    last = [d for d in order if d in in_r2][-1]
    assert body == page_body([singles[d] for d in order if d in in_r2], encode_cursor(last))
    assert await page(api, owner, hotel_id, "room_id=nowhere") == page_body([], None)


async def test_a_room_grant_pages_its_rooms_byte_for_byte(api: Api) -> None:
    owner, org_id, hotel_id, devices = await seeded_hotel(api)
    staff = await api.account("staff")
    await api.grant(owner, org_id, staff, "staff", hotel_id=hotel_id, rooms=["r1", 'r"q'])
    visible = [d for d in devices if d.room_id in ("r1", 'r"q')]
    singles = await single_bodies(api, staff, hotel_id, visible)
    body = await page(api, staff, hotel_id)
    order = [item["device_id"] for item in orjson.loads(body)["items"]]
    assert sorted(order) == sorted(d.device_id for d in visible)
    assert body == page_body([singles[d] for d in order], None)
    assert await page(api, staff, hotel_id, "room_id=r2") == page_body([], None)


async def test_times_nulls_and_escapes(api: Api) -> None:
    owner, _, hotel_id, devices = await seeded_hotel(api)
    items = {
        item["device_id"]: item
        for item in orjson.loads(await page(api, owner, hotel_id, "limit=500"))["items"]
    }
    for device in devices:
        item = items[device.device_id]
        assert item["kind"] == device.kind
        assert item["room_id"] == device.room_id
        assert item["firmware"] == device.firmware
        assert item["online"] is device.online
        assert item["state"] == device.state
        if device.last_seen is None:
            assert item["last_seen"] is None
            assert item["stale"] is True
        else:
            assert ISO_UTC.fullmatch(item["last_seen"]), item["last_seen"]
            assert datetime.fromisoformat(item["last_seen"]) == device.last_seen
            assert item["stale"] is (device.last_seen < datetime.now(UTC))
    assert items["dév-é"]["last_seen"] == "2031-01-02T03:04:05.120000Z"


async def test_pages_follow_writes(api: Api) -> None:
    """The database rewrites a device's JSON with the row: the next page shows it."""
    owner, _, hotel_id, _ = await seeded_hotel(api)
    now = datetime.now(UTC)
    async with api.relay.store.write() as conn:
        await hotels.upsert_devices(
            conn,
            hotel_id,
            [
                hotels.Device("dev-010", "lock", room_id="r9", state={"x": 1}, last_seen=now),
                hotels.Device("dev-011", "lock", firmware="9", online=True, last_seen=None),
            ],
        )
    singles = await single_bodies(
        api, owner, hotel_id, [hotels.Device("dev-010", "lock"), hotels.Device("dev-011", "lock")]
    )
    body = await page(api, owner, hotel_id, f"cursor={encode_cursor('dev-009')}&limit=2")
    assert body == page_body([singles["dev-010"], singles["dev-011"]], encode_cursor("dev-011"))
    item = orjson.loads(singles["dev-010"])
    assert (item["room_id"], item["state"], item["stale"]) == ("r9", {"x": 1}, False)
    assert orjson.loads(singles["dev-011"])["last_seen"] is None
    stale_window = timedelta(seconds=api.relay.config.stale_after_s)
    assert datetime.fromisoformat(item["last_seen"]) > now - stale_window


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", PageQuery()),
        (b"limit=100", PageQuery(100)),
        (b"limit=1&cursor=ZGV2LTAwOTk&room_id=r-1", PageQuery(1, "ZGV2LTAwOTk", "r-1")),
        (b"room_id=a;b=c", PageQuery(room_id="a;b=c")),
        (b"limit=500", PageQuery(500)),
        (b"cursor=" + b"A" * 200, PageQuery(cursor="A" * 200)),
        (b"room_id=" + b"r" * 64, PageQuery(room_id="r" * 64)),
        # Anything else is left to FastAPI's validation and decoding.
        (b"limit=501", None),
        (b"limit=0", None),
        (b"limit=007", None),
        (b"limit=1000", None),
        (b"limit=+5", None),
        (b"limit=-5", None),
        (b"limit=5.0", None),
        (b"limit=", None),
        (b"limit", None),
        (b"limit=5&limit=6", None),
        (b"limit=5&", None),
        (b"cursor=" + b"A" * 201, None),
        (b"room_id=" + b"r" * 65, None),
        (b"room_id=r%31", None),
        (b"room_id=r+1", None),
        (b"room_id=r\xc3\xa9", None),
        (b"other=1", None),
        (b"Limit=5", None),
    ],
)
def test_plain_query_strings(query: bytes, expected: PageQuery | None) -> None:
    assert plain_page_query(query) == expected


async def test_plain_and_escaped_queries_answer_alike(api: Api) -> None:
    """The short path for plain queries and FastAPI's path give the same answers."""
    owner, _, hotel_id, _ = await seeded_hotel(api)
    url = f"/v1/hotels/{hotel_id}/devices"
    pairs = [
        ("limit=5", "limit=%35"),
        ("room_id=r1&limit=2", "room_id=r%31&limit=2"),
        (f"cursor={encode_cursor('dev-010')}", f"cursor={encode_cursor('dev-010')}&unknown=1"),
        ("cursor=%25%25", "cursor=%%"),
    ]
    for plain, escaped in pairs:
        assert plain_page_query(escaped.encode()) is None
        first = await api.http.get(f"{url}?{plain}", headers=owner.headers)
        second = await api.http.get(f"{url}?{escaped}", headers=owner.headers)
        assert (first.status_code, first.content) == (second.status_code, second.content)
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        first = await api.http.get(f"{url}?limit=5", headers=headers)
        second = await api.http.get(f"{url}?limit=%35", headers=headers)
        assert first.status_code == 401
        assert (first.headers, first.content) == (second.headers, second.content)
    outsider = await api.account("outsider")
    first = await api.http.get(f"{url}?limit=5", headers=outsider.headers)
    second = await api.http.get(f"{url}?limit=%35", headers=outsider.headers)
    assert first.status_code == 404
    assert first.content == second.content
    bad = expect(await api.http.get(f"{url}?cursor=%%%", headers=owner.headers), 422)
    assert bad["code"] == "invalid_request"
