"""Hotels, rooms and devices: pages, filters and freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bellhop_cloud import hotels
from bellhop_cloud.api.schemas import DeviceOut, DevicePage

from tests.cloud.support import Api, expect


async def test_devices_page_through_with_cursors(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.seed_devices(hotel_id, 250)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 100} | ({"cursor": cursor} if cursor else {})
        page = expect(
            await api.http.get(
                f"/v1/hotels/{hotel_id}/devices", params=query, headers=owner.headers
            ),
            200,
        )
        seen += [d["device_id"] for d in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"dev-{n:04d}" for n in range(250)]


async def test_room_filter_and_device_detail(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.seed_devices(hotel_id, 30, rooms=10)
    page = expect(
        await api.http.get(
            f"/v1/hotels/{hotel_id}/devices", params={"room_id": "r004"}, headers=owner.headers
        ),
        200,
    )
    assert [d["device_id"] for d in page["items"]] == ["dev-0004", "dev-0014", "dev-0024"]
    device = expect(
        await api.http.get(f"/v1/hotels/{hotel_id}/devices/dev-0014", headers=owner.headers), 200
    )
    assert device["state"] == {"setpoint": 21.5, "n": 14}
    assert device["kind"] == "thermostat"
    missing = await api.http.get(f"/v1/hotels/{hotel_id}/devices/nope", headers=owner.headers)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


async def test_freshness_follows_last_seen(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    fresh_hotel = await api.hotel(owner, org_id, "Fresh")
    old_hotel = await api.hotel(owner, org_id, "Old")
    await api.seed_devices(fresh_hotel, 3, rooms=1)
    long_ago = datetime.now(UTC) - timedelta(seconds=api.relay.config.stale_after_s + 60)
    await api.seed_devices(old_hotel, 3, rooms=1, last_seen=long_ago)
    fresh = expect(await api.http.get(f"/v1/hotels/{fresh_hotel}", headers=owner.headers), 200)
    old = expect(await api.http.get(f"/v1/hotels/{old_hotel}", headers=owner.headers), 200)
    assert fresh["stale"] is False
    assert old["stale"] is True
    assert datetime.fromisoformat(old["last_seen"]) == long_ago
    devices = expect(
        await api.http.get(f"/v1/hotels/{old_hotel}/devices", headers=owner.headers), 200
    )
    assert all(d["stale"] for d in devices["items"])
    never = await api.hotel(owner, org_id, "Never synced")
    body = expect(await api.http.get(f"/v1/hotels/{never}", headers=owner.headers), 200)
    assert body["last_seen"] is None
    assert body["stale"] is True


async def test_bad_cursor_and_limit_are_clear_errors(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    url = f"/v1/hotels/{hotel_id}/devices"
    bad_cursor = await api.http.get(url, params={"cursor": "%%%"}, headers=owner.headers)
    assert bad_cursor.status_code == 422
    assert bad_cursor.json()["code"] == "invalid_request"
    too_many = await api.http.get(url, params={"limit": 100000}, headers=owner.headers)
    assert too_many.status_code == 422


async def test_unknown_time_zone_is_refused(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    response = await api.http.post(
        f"/v1/orgs/{org_id}/hotels",
        json={"name": "Atlantis", "timezone": "Ocean/Atlantis"},
        headers=owner.headers,
    )
    assert response.status_code == 422


async def test_device_page_matches_the_documented_schema(api: Api) -> None:
    """The page is encoded by the database; it must still be exactly DeviceOut."""
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.seed_devices(hotel_id, 3, rooms=2)
    async with api.relay.store.write() as conn:
        await hotels.upsert_devices(
            conn, hotel_id, [hotels.Device("dev-new", "sensor", state={"a": [1, None, "x"]})]
        )
    page = expect(await api.http.get(f"/v1/hotels/{hotel_id}/devices", headers=owner.headers), 200)
    DevicePage.model_validate(page)
    for item in page["items"]:
        assert set(item) == set(DeviceOut.model_fields)
        single = expect(
            await api.http.get(
                f"/v1/hotels/{hotel_id}/devices/{item['device_id']}", headers=owner.headers
            ),
            200,
        )
        assert DeviceOut.model_validate(single) == DeviceOut.model_validate(item)
    never = page["items"][-1]
    assert never["device_id"] == "dev-new"
    assert never["last_seen"] is None
    assert never["stale"] is True
    assert never["online"] is False
    assert never["room_id"] is None
    assert never["state"] == {"a": [1, None, "x"]}
    assert page["items"][0]["online"] is True
    assert page["items"][0]["stale"] is False


async def test_new_devices_show_up_in_the_next_read(api: Api) -> None:
    """The read path keeps no snapshot: what the bridge wrote is what the next page shows."""
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    url = f"/v1/hotels/{hotel_id}/devices"
    assert expect(await api.http.get(url, headers=owner.headers), 200)["items"] == []
    await api.seed_devices(hotel_id, 2, rooms=1)
    first = expect(await api.http.get(url, headers=owner.headers), 200)["items"]
    assert [d["device_id"] for d in first] == ["dev-0000", "dev-0001"]
    async with api.relay.store.write() as conn:
        await hotels.upsert_devices(
            conn, hotel_id, [hotels.Device("dev-0001", "thermostat", state={"setpoint": 19})]
        )
    again = expect(await api.http.get(f"{url}/dev-0001", headers=owner.headers), 200)
    assert again["state"] == {"setpoint": 19}
