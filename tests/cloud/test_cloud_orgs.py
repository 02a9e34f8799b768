"""Organisations, roles, time-limited and room-limited grants, and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bellhop_cloud.db.schema import grants
from bellhop_cloud.relay import Relay
from httpx import Response

from tests.cloud.support import Api, expect, in_a_week


async def test_creator_owns_the_organisation(api: Api) -> None:
    ana = await api.account("ana")
    org_id = await api.org(ana, "Seaside")
    org = expect(await api.http.get(f"/v1/orgs/{org_id}", headers=ana.headers), 200)
    assert org["role"] == "owner"
    listed = expect(await api.http.get("/v1/orgs", headers=ana.headers), 200)
    assert [o["id"] for o in listed] == [org_id]


async def test_roles_can_only_be_granted_below_your_own(api: Api) -> None:
    owner = await api.account("owner")
    admin = await api.account("admin")
    manager = await api.account("manager")
    target = await api.account("target")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.grant(owner, org_id, admin, "admin")
    await api.grant(admin, org_id, manager, "manager", hotel_id=hotel_id)

    async def attempt(granter_headers: dict[str, str], role: str, hotel: str | None) -> Response:
        return await api.http.post(
            f"/v1/orgs/{org_id}/grants",
            json={"email": target.email, "role": role, "hotel_id": hotel},
            headers=granter_headers,
        )

    denied = await attempt(admin.headers, "admin", None)
    assert denied.status_code == 403
    assert denied.json()["code"] == "role_not_allowed"
    assert (await attempt(manager.headers, "staff", None)).status_code == 403
    assert (await attempt(manager.headers, "manager", hotel_id)).status_code == 403
    assert (await attempt(manager.headers, "staff", hotel_id)).status_code == 201
    assert (await attempt(owner.headers, "owner", None)).status_code == 201


async def test_the_last_owner_cannot_be_removed(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    grant_id = expect(await api.http.get(f"/v1/orgs/{org_id}/grants", headers=owner.headers), 200)[
        0
    ]["id"]
    response = await api.http.delete(f"/v1/orgs/{org_id}/grants/{grant_id}", headers=owner.headers)
    assert response.status_code == 409
    assert response.json()["code"] == "last_owner"
    removal = await api.http.delete(
        f"/v1/orgs/{org_id}/members/{owner.user_id}", headers=owner.headers
    )
    assert removal.status_code == 409


async def test_removed_member_loses_access_at_once(api: Api) -> None:
    owner = await api.account("owner")
    staff = await api.account("staff")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.grant(owner, org_id, staff, "staff")
    expect(await api.http.get(f"/v1/hotels/{hotel_id}", headers=staff.headers), 200)
    removed = await api.http.delete(
        f"/v1/orgs/{org_id}/members/{staff.user_id}", headers=owner.headers
    )
    assert removed.status_code == 204
    # The same, still unexpired access token no longer opens anything.
    assert (await api.http.get(f"/v1/hotels/{hotel_id}", headers=staff.headers)).status_code == 404
    assert expect(await api.http.get("/v1/orgs", headers=staff.headers), 200) == []


async def test_time_limited_grant_stops_working_when_it_expires(api: Api, relay: Relay) -> None:
    owner = await api.account("owner")
    contractor = await api.account("contractor")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    grant = await api.grant(
        owner, org_id, contractor, "staff", hotel_id=hotel_id, expires_at=in_a_week()
    )
    assert grant["active"] is True
    expect(await api.http.get(f"/v1/hotels/{hotel_id}", headers=contractor.headers), 200)
    # A week passes (moved in the store, not waited for).
    async with relay.store.write() as conn:
        await conn.execute(
            grants.update()
            .where(grants.c.id == grant["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    relay.access_cache.clear()  # the clock jumped a week; a cached check would have ended too
    gone = await api.http.get(f"/v1/hotels/{hotel_id}", headers=contractor.headers)
    assert gone.status_code == 404
    listed = expect(await api.http.get(f"/v1/orgs/{org_id}/grants", headers=owner.headers), 200)
    assert {g["id"]: g["active"] for g in listed}[grant["id"]] is False


async def test_expiry_in_the_past_is_refused(api: Api) -> None:
    owner = await api.account("owner")
    other = await api.account("other")
    org_id = await api.org(owner, "Seaside")
    response = await api.http.post(
        f"/v1/orgs/{org_id}/grants",
        json={"email": other.email, "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"},
        headers=owner.headers,
    )
    assert response.status_code == 422


async def test_room_limited_grant_sees_only_its_rooms(api: Api) -> None:
    owner = await api.account("owner")
    cleaner = await api.account("cleaner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.seed_devices(hotel_id, 20, rooms=4)
    await api.grant(owner, org_id, cleaner, "staff", hotel_id=hotel_id, rooms=["r001", "r003"])
    rooms = expect(await api.http.get(f"/v1/hotels/{hotel_id}/rooms", headers=cleaner.headers), 200)
    assert [r["room_id"] for r in rooms["items"]] == ["r001", "r003"]
    devices = expect(
        await api.http.get(f"/v1/hotels/{hotel_id}/devices", headers=cleaner.headers), 200
    )
    assert {d["room_id"] for d in devices["items"]} == {"r001", "r003"}
    assert len(devices["items"]) == 10
    hidden = await api.http.get(f"/v1/hotels/{hotel_id}/devices/dev-0000", headers=cleaner.headers)
    assert hidden.status_code == 404
    hidden_room = await api.http.get(f"/v1/hotels/{hotel_id}/rooms/r000", headers=cleaner.headers)
    assert hidden_room.status_code == 404
    # Room-limited staff cannot act hotel-wide.
    gateways = await api.http.get(f"/v1/hotels/{hotel_id}/gateways", headers=cleaner.headers)
    assert gateways.status_code == 403


async def test_hotel_grant_does_not_reach_other_hotels(api: Api) -> None:
    owner = await api.account("owner")
    manager = await api.account("manager")
    org_id = await api.org(owner, "Seaside")
    lisbon = await api.hotel(owner, org_id, "Lisbon")
    porto = await api.hotel(owner, org_id, "Porto")
    await api.grant(owner, org_id, manager, "manager", hotel_id=lisbon)
    listed = expect(await api.http.get(f"/v1/orgs/{org_id}/hotels", headers=manager.headers), 200)
    assert [h["id"] for h in listed] == [lisbon]
    assert (await api.http.get(f"/v1/hotels/{porto}", headers=manager.headers)).status_code == 404


async def test_audit_log_records_role_changes_for_admins_only(api: Api) -> None:
    owner = await api.account("owner")
    staff = await api.account("staff")
    org_id = await api.org(owner, "Seaside")
    grant = await api.grant(owner, org_id, staff, "staff")
    await api.login(staff.email)
    revoked = await api.http.delete(
        f"/v1/orgs/{org_id}/grants/{grant['id']}", headers=owner.headers
    )
    assert revoked.status_code == 204
    page = expect(await api.http.get(f"/v1/orgs/{org_id}/audit", headers=owner.headers), 200)
    actions = [e["action"] for e in page["items"]]
    assert actions[:3] == ["grant.revoked", "login.succeeded", "grant.created"]
    assert "org.created" in actions
    assert page["items"][0]["detail"]["role"] == "staff"
    await api.grant(owner, org_id, staff, "manager")
    denied = await api.http.get(f"/v1/orgs/{org_id}/audit", headers=staff.headers)
    assert denied.status_code == 403


async def test_audit_pages_newest_first(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    for n in range(5):
        await api.hotel(owner, org_id, f"Hotel {n}")
    first = expect(
        await api.http.get(f"/v1/orgs/{org_id}/audit?limit=3", headers=owner.headers), 200
    )
    assert [e["detail"]["name"] for e in first["items"]] == ["Hotel 4", "Hotel 3", "Hotel 2"]
    second = expect(
        await api.http.get(
            f"/v1/orgs/{org_id}/audit?limit=3&before={first['next_before']}",
            headers=owner.headers,
        ),
        200,
    )
    assert [e["detail"].get("name") for e in second["items"]] == ["Hotel 1", "Hotel 0", "Seaside"]
