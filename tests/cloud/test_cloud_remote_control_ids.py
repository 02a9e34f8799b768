"""Remote control's items with a real gateway: a stored row that no frame can carry as
it is does not hold back the rows sent with it, a command id first used on the LAN is
refused through the cloud for another command, and each kind of answer marks only its
own kind of item done (docs/remote-control.md)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_cloud.bridge import sync
from bellhop_cloud.bridge.items import Item, ItemKind, frame_of, now_ms, unsendable
from bellhop_cloud.bridge.plan import Plan
from bellhop_cloud.db.schema import command_results, downlink
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import Bridge, CloudHotel, EdgeSite, eventually, lan_setpoint
from tests.cloud.support import expect

SETPOINT = {"name": "set_setpoint", "params": {"setpoint_c": 21.5}}


def _command(hotel_id: str, item_id: str, params: Mapping[str, object]) -> Item:
    now = now_ms()
    body = {"name": "set_setpoint", "params": dict(params), "by": "cloud:old", "timeout_ms": 5000}
    return Item(
        hotel_id, item_id, ItemKind.COMMAND, "r101-thermostat", body, "u", now, now + 60_000
    )


def test_a_row_no_frame_can_carry_as_it_is_still_has_a_frame() -> None:
    for params, field in (({"setpoint_c": 10**400}, "setpoint_c"), ({"t": 2**53 + 1}, "t")):
        row = _command("h", "c-1", params)
        frame = frame_of(row)  # never raises: the rows sent with it go too
        assert frame.command.command.command_id == "c-1"
        # Never rounded to another number: an infinity, which the gateway refuses.
        assert frame.command.command.params[field] in (float("inf"), float("-inf"))
        assert (unsendable(row) or "").startswith(f"{field}: an integer beyond")
    broken = Item("h", "c-2", ItemKind.COMMAND, "d", {"params": {}}, "u", 1, 2)
    assert frame_of(broken).command.command.name == ""  # the gateway answers it failed
    assert unsendable(broken) == "no command name"
    assert unsendable(_command("h", "c-3", {"setpoint_c": 2**53})) is None


async def test_a_row_that_cannot_be_encoded_is_answered_failed_and_holds_back_nothing(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    async with Gateway(site.config(bridge.url)):  # the relay learns the hotel's devices
        await eventually(lambda: hotel.knows("r101-thermostat"), "the device known")
    await eventually(lambda: hotel.linked(False), "the bridge's end recorded")
    # A row the API refuses now (an older relay's): its number cannot be a double.
    async with hotel.api.relay.store.write() as conn:
        poison = _command(hotel.hotel_id, "poison", {"setpoint_c": 10**400})
        await conn.execute(downlink.insert(), [poison.row()])
    url = f"/v1/hotels/{hotel.hotel_id}/devices/r101-thermostat/commands"
    body = {**SETPOINT, "mode": "queue", "command_id": "victim"}
    expect(await hotel.api.http.post(url, json=body, headers=hotel.owner.headers), 202)
    async with (
        site.device("r101-thermostat") as dev,
        dev.serving(),
        Gateway(site.config(bridge.url)),
    ):
        await hotel.command("victim", "succeeded")
        failed = await hotel.command("poison", "failed")
    assert failed["error"].startswith("params.setpoint_c: must be a finite number")
    assert [c["id"] for c in dev.commands] == ["victim"]  # the refused one never ran


async def test_an_id_used_on_the_lan_is_refused_through_the_cloud_for_another_command(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    url = f"/v1/hotels/{hotel.hotel_id}/devices/r101-thermostat/commands"
    async with Gateway(site.config(bridge.url)) as gateway, site.device("r101-thermostat") as dev:
        await hotel.online("r101-thermostat")
        async with dev.serving():
            request = lan_setpoint("lan-1")
            lan = await gateway.send_command(request, timeout=5)
            assert lan.result.status.value == "succeeded"
            other = {"name": "set_setpoint", "params": {"setpoint_c": 30}, "command_id": "lan-1"}
            for mode in ("wait", "wait"):  # and again: the same answer
                answer = await hotel.api.http.post(
                    url, json={**other, "mode": mode}, headers=hotel.owner.headers
                )
                assert expect(answer, 409)["code"] == "command_id_reused"
            # The id's resource is never the cloud's request with the LAN's result.
            missing = await hotel.api.http.get(
                f"/v1/hotels/{hotel.hotel_id}/commands/lan-1", headers=hotel.owner.headers
            )
            expect(missing, 404)
            # The LAN's own command through the cloud joins it: its result, not a rerun.
            same = {**SETPOINT, "command_id": "lan-1"}
            joined = expect(
                await hotel.api.http.post(url, json=same, headers=hotel.owner.headers), 200
            )
            assert joined["state"] == "succeeded"
        assert [c["id"] for c in dev.commands] == ["lan-1"]


def _acknowledged(hotel_id: str, alert_id: str) -> bridge_pb2.OutboxEvent:
    alert = common_pb2.Alert(
        alert_id=alert_id,
        kind=common_pb2.ALERT_KIND_BREACH,
        severity=common_pb2.ALERT_SEVERITY_CRITICAL,
        state=common_pb2.ALERT_STATE_ACKNOWLEDGED,
        device_id="r101-door",
        room_id="101",
        message="x",
        acknowledged_by="staff",
    )
    alert.raised_at.FromMilliseconds(now_ms())
    alert.acknowledged_at.FromMilliseconds(now_ms())
    return bridge_pb2.OutboxEvent(alert=alert)


def _result(command_id: str) -> bridge_pb2.OutboxEvent:
    result = common_pb2.CommandResult(
        command_id=command_id,
        device_id="r101-thermostat",
        status=common_pb2.COMMAND_STATUS_SUCCEEDED,
    )
    result.completed_at.FromMilliseconds(now_ms())
    return bridge_pb2.OutboxEvent(command_result=result)


async def test_each_answer_marks_only_its_own_kind_of_item_done(hotel: CloudHotel) -> None:
    store, hotel_id = hotel.api.relay.store, hotel.hotel_id
    now = now_ms()

    def item(item_id: str, kind: ItemKind) -> dict[str, object]:
        body = {"alert_id": "al-1", "by": "x", "note": ""}
        return Item(hotel_id, item_id, kind, "r101-door", body, "u", now, now + 60_000).row()

    # An acknowledgement's item, and a command of an older relay named like another's.
    async with store.write() as conn:
        rows = [item("ack:al-1", ItemKind.ALERT_ACK), item("ack:al-2", ItemKind.COMMAND)]
        await conn.execute(downlink.insert(), rows)

    async def states() -> dict[str, str]:
        async with store.read() as conn:
            found = await conn.execute(sa.select(downlink.c.item_id, downlink.c.state))
            return {row.item_id: row.state for row in found}

    # A result named as the acknowledgement (from an edge of before the rule) answers
    # no item, by the direct path or the outbox.
    answer = Plan.of([_result("ack:al-1")], hotel_id)
    assert sync.answered_ids(answer) == []
    await store.run(sync.results, answer)
    await store.run(sync.apply, hotel.gateway_id, answer, datetime.now(UTC), seen=False)
    assert await states() == {"ack:al-1": "queued", "ack:al-2": "queued"}
    # An alert acknowledged on the edge answers its acknowledgement, never a command.
    acks = Plan.of([_acknowledged(hotel_id, "al-1"), _acknowledged(hotel_id, "al-2")], hotel_id)
    await store.run(sync.apply, hotel.gateway_id, acks, datetime.now(UTC), seen=False)
    assert await states() == {"ack:al-1": "done", "ack:al-2": "queued"}


async def test_a_result_the_gateway_clock_dates_before_its_request_is_stored_all_the_same(
    hotel: CloudHotel,
) -> None:
    """Its batch is acknowledged, so the gateway forgets it: a result that looks older
    than the relay's request (the gateway's clock behind) is kept, and only leaves the
    relay's command to the gateway's direct answer."""
    store, hotel_id = hotel.api.relay.store, hotel.hotel_id
    now = now_ms()
    row = _command(hotel_id, "c-skew", {"setpoint_c": 21.5}).row(now)
    async with store.write() as conn:
        await conn.execute(downlink.insert(), [row])
    result = common_pb2.CommandResult(
        command_id="c-skew", device_id="r101-thermostat", status=common_pb2.COMMAND_STATUS_SUCCEEDED
    )
    result.completed_at.FromMilliseconds(row["requested_at"] + 100 - 2000)  # 2 s behind
    event = bridge_pb2.OutboxEvent(command_result=result, seq=1)
    applied = await store.run(
        sync.apply_batch, hotel.gateway_id, hotel_id, [event], datetime.now(UTC), seen=False
    )
    assert applied.highest  # acknowledged: the gateway drops its copy
    async with store.read() as conn:
        stored = (
            await conn.execute(
                sa.select(command_results.c.status).where(
                    command_results.c.hotel_id == hotel_id,
                    command_results.c.command_id == "c-skew",
                )
            )
        ).scalar_one()
        state = (
            await conn.execute(sa.select(downlink.c.state).where(downlink.c.item_id == "c-skew"))
        ).scalar_one()
    assert stored == "succeeded"  # kept
    assert state == "sent"  # the gateway's direct answer settles the relay's command
