"""Desired state set through the cloud and on site, merged on the gateway by the policy of
docs/conflicts.md, with the outcome shown on both sides; a real gateway and relay."""

from __future__ import annotations

from typing import Any

from bellhop_edge import convert
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import Bridge, CloudHotel, EdgeSite, eventually
from tests.cloud.support import expect

DEVICE = "r101-thermostat"


async def put(hotel: CloudHotel, body: dict[str, Any], status: int) -> Any:
    answer = await hotel.api.http.put(
        f"/v1/hotels/{hotel.hotel_id}/devices/{DEVICE}/desired",
        json=body,
        headers=hotel.owner.headers,
    )
    return expect(answer, status)


async def until_desired(
    hotel: CloudHotel, want: dict[str, Any], *, merged: str | None = None
) -> dict[str, Any]:
    """The device's desired state, once the relay shows `want`; with `merged`, once the
    gateway's merge of that change has come back too (the same values may be shown
    before it, from the gateway's own changes)."""

    async def read() -> dict[str, Any] | None:
        body: dict[str, Any] = await hotel.get(f"/devices/{DEVICE}/desired")
        if body["values"] != want:
            return None
        if merged is not None and (body["change_id"] != merged or body["pending"]):
            return None
        return body

    found: dict[str, Any] = await eventually(read, f"desired state {want}")
    return found


async def test_desired_state_set_remotely_is_merged_on_the_gateway_and_shown_on_both_sides(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)) as gateway:
        await hotel.online(DEVICE)
        body = await put(hotel, {"values": {"setpoint": 22.5}}, 200)
        assert body["outcome"] == "merged"
        desired = body["desired"]
        assert desired["values"] == {"setpoint": 22.5}
        assert desired["change_id"] == body["change_id"]
        assert desired["pending"] == []
        (outcome,) = desired["outcomes"]
        assert outcome == {
            "field": "setpoint",
            "applied": True,
            "reason": "no_local_intent",
            "remote_value": 22.5,
            "local_value": None,
        }
        assert desired["fields"]["setpoint"]["set_by"] == f"cloud:{hotel.owner.email}"
        # The gateway holds the same, and shows the same outcome on the LAN API.
        on_site = convert.desired(gateway.hotel.desired[DEVICE])
        assert dict(on_site.values) == {"setpoint": 22.5}
        assert on_site.change_id == body["change_id"]
        assert [(o.field, o.applied, o.reason) for o in on_site.outcomes] == [
            ("setpoint", True, "no_local_intent")
        ]


async def test_what_both_sides_set_while_apart_is_merged_by_the_policy(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)):
        await hotel.online(DEVICE)
    await eventually(lambda: hotel.linked(False), "the bridge's end recorded")
    # Apart: a manager sets both fields first; staff on site then set the setpoint again
    # (later, so it stands) and switch the heating off as a safety override.
    queued = await put(hotel, {"values": {"setpoint": 25.0, "mode": "heat"}}, 202)
    assert queued["outcome"] == "queued"
    assert queued["desired"]["pending"] == [queued["change_id"]]
    async with Gateway(site.config(bridge.url)) as gateway:
        gateway.set_desired(DEVICE, {"setpoint": 19.0}, by="staff:front-desk")
        gateway.set_desired(DEVICE, {"mode": "off"}, by="staff:maintenance", safety=True)
        shown = await until_desired(
            hotel, {"setpoint": 19.0, "mode": "off"}, merged=queued["change_id"]
        )
        outcomes = {o["field"]: (o["applied"], o["reason"]) for o in shown["outcomes"]}
        assert outcomes == {
            "mode": (False, "safety_override"),
            "setpoint": (False, "local_later"),
        }
        assert shown["fields"]["mode"]["safety"] is True
        assert shown["pending"] == []
        # A later change from the cloud: the setpoint is taken, the override still stands.
        later = await hotel.api.http.put(
            f"/v1/hotels/{hotel.hotel_id}/devices/{DEVICE}/desired",
            json={"values": {"setpoint": 21.0, "mode": "auto"}},
            headers=hotel.owner.headers,
        )
        # 200 when the gateway answered within 5 s; on a loaded machine it may take longer.
        assert later.status_code in {200, 202}, later.text
        merged = await until_desired(hotel, {"setpoint": 21.0, "mode": "off"})
        assert merged["change_id"] == later.json()["change_id"]
        outcomes = {o["field"]: (o["applied"], o["reason"]) for o in merged["outcomes"]}
        assert outcomes == {"mode": (False, "safety_override"), "setpoint": (True, "remote_later")}
        assert dict(gateway.hotel.desired[DEVICE].values) == {"setpoint": 21.0, "mode": "off"}


async def test_desired_state_is_refused_by_field_and_read_by_room(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)):
        await hotel.online(DEVICE)
    for body, where in (
        ({"values": {}}, "values"),
        ({"values": {"Bad": 1}}, "values"),
        ({"values": {"setpoint": "x" * 201}}, "values"),
        ({"values": {"setpoint": 20}, "base_version": 0}, "base_version"),
        ({"values": {"setpoint": 20}, "extra": 1}, "extra"),
        ({"values": {"setpoint": 99}}, "setpoint"),  # past what a thermostat takes
        ({"values": {"brightness": 50}}, "brightness"),  # a light's, not a thermostat's
        # Strict JSON: no number or boolean written as something else.
        ({"values": {"setpoint": 20}, "ttl_s": "60"}, "ttl_s"),
        ({"values": {"setpoint": 20}, "base_version": True}, "base_version"),
        ({"values": {"setpoint": 20}, "base_version": "3"}, "base_version"),
        ({"values": {"setpoint": 20}, "base_version": 2.5}, "base_version"),
    ):
        problem = await put(hotel, body, 422)
        assert problem["code"] == "invalid_request"
        assert where in str(problem), problem
    api = hotel.api
    staff = await api.account("staff-102")
    await api.grant(
        hotel.owner, hotel.org_id, staff, "staff", hotel_id=hotel.hotel_id, rooms=["102"]
    )
    answer = await api.http.get(
        f"/v1/hotels/{hotel.hotel_id}/devices/{DEVICE}/desired", headers=staff.headers
    )
    expect(answer, 404)
