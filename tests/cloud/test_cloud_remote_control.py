"""Remote control through the relay: REST → relay → bridge → gateway → MQTT device and
back, with a real gateway, a real Mosquitto and a device that answers."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from bellhop_bridge import CommandReceived, Opened
from bellhop_cloud.db.schema import audit_log
from bellhop_edge.core.model import AlertState
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import (
    Bridge,
    CloudHotel,
    EdgeSite,
    RawGateway,
    eventually,
    lan_setpoint,
)
from tests.cloud.support import expect
from tests.support.mosquitto import MosquittoBroker

SETPOINT = {"name": "set_setpoint", "params": {"setpoint_c": 21.5}}


async def command(
    hotel: CloudHotel, device_id: str, body: dict[str, Any], status: int, who: Any = None
) -> Any:
    answer = await hotel.api.http.post(
        f"/v1/hotels/{hotel.hotel_id}/devices/{device_id}/commands",
        json=body,
        headers=(who or hotel.owner).headers,
    )
    return expect(answer, status)


async def connected(hotel: CloudHotel, device_id: str = "r101-thermostat") -> None:
    """The relay says the gateway's bridge is open (what remote commands look at), and
    knows the device (the gateway's registry has arrived)."""
    await hotel.online(device_id)


async def test_a_remote_command_runs_once_on_the_device_and_its_result_comes_back(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)) as gateway, site.device("r101-thermostat") as dev:
        await connected(hotel)
        async with dev.serving():
            body = await command(hotel, "r101-thermostat", {**SETPOINT, "command_id": "c-1"}, 200)
            assert body["state"] == "succeeded"
            assert body["result"] == {"setpoint_c": 21.5}
            # The same id again (a retry after a lost answer): the first result, not a rerun.
            again = await command(hotel, "r101-thermostat", {**SETPOINT, "command_id": "c-1"}, 200)
            assert again["state"] == "succeeded"
        assert [c["id"] for c in dev.commands] == ["c-1"]
        # The edge's own history says who sent it, from where.
        record = gateway.store.get_command("c-1")
        assert record is not None
        assert record.request.requested_by == f"cloud:{hotel.owner.email}"
    polled = await hotel.get("/commands/c-1")
    assert polled["state"] == "succeeded"
    assert polled["requested_by"] == f"cloud:{hotel.owner.email}"
    async with hotel.api.relay.store.read() as conn:
        actions = (
            await conn.execute(
                sa.select(audit_log.c.actor_id, audit_log.c.detail).where(
                    audit_log.c.action == "command.sent"
                )
            )
        ).all()
    assert len(actions) == 2  # every request is audited, the retry included
    assert all(a.actor_id == hotel.owner.user_id for a in actions)
    assert actions[0].detail["commands"][0]["command_id"] == "c-1"


async def test_one_id_on_the_lan_and_through_the_cloud_runs_once(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)) as gateway, site.device("r101-thermostat") as dev:
        await connected(hotel)
        async with dev.serving():
            request = lan_setpoint("shared-1")
            lan = await gateway.send_command(request, timeout=5)
            cloud = await command(
                hotel, "r101-thermostat", {**SETPOINT, "command_id": "shared-1"}, 200
            )
        assert cloud["state"] == lan.result.status.value == "succeeded"
        assert cloud["result"] == lan.result.result
        assert [c["id"] for c in dev.commands] == ["shared-1"]
        # The same id for another command is refused, on this path as on the LAN.
        refused = await command(
            hotel,
            "r101-thermostat",
            {"name": "set_setpoint", "params": {"setpoint_c": 30}, "command_id": "shared-1"},
            409,
        )
        assert refused["code"] == "command_id_reused"


@pytest.mark.timeout(120)  # three gateway sessions: slow on a loaded machine
async def test_offline_gateway_409_unless_queued_then_delivered_on_reconnect_never_expired(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)):  # the relay learns the hotel's devices
        await eventually(lambda: hotel.knows("r101-thermostat"), "the device known")
    await eventually(lambda: hotel.linked(False), "the bridge's end recorded")
    refused = await command(hotel, "r101-thermostat", SETPOINT, 409)
    assert refused["code"] == "gateway_offline"
    assert "mode=queue" in refused["detail"]
    stale = await command(
        hotel,
        "r101-thermostat",
        {**SETPOINT, "mode": "queue", "ttl_s": 1, "command_id": "old"},
        202,
    )
    assert stale["state"] == "queued"
    await hotel.command("old", "expired")  # its expiry passes while the gateway is away
    queued = await command(
        hotel, "r101-thermostat", {**SETPOINT, "mode": "queue", "command_id": "new"}, 202
    )
    assert queued["state"] == "queued"
    async with (
        site.device("r101-thermostat") as dev,
        dev.serving(),
        Gateway(site.config(bridge.url)),
    ):
        await hotel.command("new", "succeeded")
    # The queued command arrived once; the expired one, queued before it, never.
    assert [c["id"] for c in dev.commands] == ["new"]
    assert (await hotel.get("/commands/old"))["state"] == "expired"


async def test_a_gateway_that_never_answers_gives_504_with_where_to_follow(
    hotel: CloudHotel, bridge: Bridge
) -> None:
    async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as raw:
        await raw.until_event(Opened)
        await raw.register_thermostat()
        await connected(hotel)
        answer = asyncio.create_task(
            command(hotel, "r101-thermostat", {**SETPOINT, "timeout_s": 0.5}, 504)
        )
        received = await raw.until_event(CommandReceived)
        assert received.command.command.name == "set_setpoint"
        body = await answer
    assert body["code"] == "command_timed_out"
    assert f"/v1/hotels/{hotel.hotel_id}/commands/" in body["detail"]


async def test_a_fleet_runs_once_per_device_even_when_retried(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge, mosquitto: MosquittoBroker
) -> None:
    site.creds.update(mosquitto.add_devices(hotel.hotel_id, ["r101-light"]))
    mosquitto.reload()
    fleet = {
        "name": "set_light",
        "params": {"on": True},
        "fleet_id": "evening",
        "target": {"device_ids": ["r101-light"], "room_ids": ["101"]},
    }
    url = f"/v1/hotels/{hotel.hotel_id}/commands"
    async with Gateway(site.config(bridge.url)), site.device("r101-light") as light:
        await connected(hotel, "r101-light")
        async with light.serving():
            first = expect(
                await hotel.api.http.post(url, json=fleet, headers=hotel.owner.headers), 200
            )
            second = expect(
                await hotel.api.http.post(url, json=fleet, headers=hotel.owner.headers), 200
            )
    assert first["targeted"] == 1
    assert first["states"] == {"succeeded": 1}
    assert second["commands"][0]["command_id"] == first["commands"][0]["command_id"]
    assert len(light.commands) == 1


async def test_a_remote_acknowledgement_is_the_edges_with_the_same_who_and_when(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)) as gateway:
        await connected(hotel)
        await site.breach()
        (alert,) = await eventually(lambda: hotel.get("/alerts", state="open"), "the alert")
        url = f"/v1/hotels/{hotel.hotel_id}/alerts/{alert['alert_id']}/acknowledge"
        first = await hotel.api.http.post(
            url, json={"note": "on my way"}, headers=hotel.owner.headers
        )
        assert expect(first, 200)["outcome"] == "acknowledged"
        again = await hotel.api.http.post(url, json={}, headers=hotel.owner.headers)
        assert expect(again, 200)["outcome"] == "already_acknowledged"
        (edge,) = [a for a in gateway.store.list_alerts(states=None, room_id=None, limit=10)]
    assert edge.state is AlertState.ACKNOWLEDGED
    (cloud,) = await hotel.get("/alerts")
    assert cloud["state"] == "acknowledged"
    assert edge.acknowledged_by == cloud["acknowledged_by"] == f"cloud:{hotel.owner.email}"
    assert edge.note == cloud["note"] == "on my way"
    assert edge.acknowledged_at is not None
    assert abs(edge.acknowledged_at / 1000 - _epoch(cloud["acknowledged_at"])) < 0.002


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def test_commands_respect_rooms_and_roles(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    api = hotel.api
    viewer = await api.account("viewer")
    staff = await api.account("staff")
    await api.grant(hotel.owner, hotel.org_id, viewer, "viewer", hotel_id=hotel.hotel_id)
    await api.grant(
        hotel.owner, hotel.org_id, staff, "staff", hotel_id=hotel.hotel_id, rooms=["102"]
    )
    async with Gateway(site.config(bridge.url)):
        await connected(hotel)
        await hotel.online("r101-thermostat")
        forbidden = await command(hotel, "r101-thermostat", SETPOINT, 403, who=viewer)
        assert forbidden["code"] in {"forbidden", "role_not_allowed"}
        # Staff of room 102 do not see room 101's devices at all.
        await command(hotel, "r101-thermostat", SETPOINT, 404, who=staff)
    bad = await command(hotel, "r101-thermostat", {"name": "Bad Name"}, 422)
    assert bad["code"] == "invalid_request"
    too_long = await command(hotel, "r101-thermostat", {**SETPOINT, "timeout_s": 301}, 422)
    assert too_long["code"] == "invalid_request"
    # Within the API's range but past this relay's limit: kept, and the limit applied.
    queued = await command(
        hotel, "r101-thermostat", {**SETPOINT, "mode": "queue", "ttl_s": 7 * 86_400}, 202
    )
    kept = _epoch(queued["expires_at"]) - _epoch(queued["requested_at"])
    assert kept == hotel.api.relay.config.command_queue_max_s
