"""The relay tells a gateway's refusal of a reused command id by the answer's flag
(`RemoteCommandResult.id_reused`), never by the error's words: a device's own failure
whose error reads like the refusal is an ordinary failed result (docs/remote-control.md)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_cloud.bridge import sync
from bellhop_cloud.bridge.items import Item, ItemKind, now_ms
from bellhop_cloud.bridge.plan import Plan
from bellhop_cloud.db.schema import command_results, downlink
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import Bridge, CloudHotel, EdgeSite
from tests.cloud.support import expect


def _lookalike(command_id: str) -> str:
    """The words of the edge's refusal of a reused id, about `command_id`."""
    return f"command id {command_id!r} was already used for 'set_setpoint' on 'r101-thermostat'"


async def test_a_device_failure_that_reads_like_the_refusal_is_stored_as_a_failure(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    url = f"/v1/hotels/{hotel.hotel_id}/devices/r101-thermostat/commands"
    async with Gateway(site.config(bridge.url)), site.device("r101-thermostat") as dev:
        await hotel.online("r101-thermostat")

        def fail(command: dict[str, Any]) -> dict[str, Any]:
            return {"id": command["id"], "status": "error", "error": _lookalike(command["id"])}

        dev.answer = fail
        async with dev.serving():
            body = {"name": "set_setpoint", "params": {"setpoint_c": 21.5}, "mode": "wait"}
            waited = expect(
                await hotel.api.http.post(
                    url, json={**body, "command_id": "look-1"}, headers=hotel.owner.headers
                ),
                200,
            )
            assert (waited["state"], waited["error"]) == ("failed", _lookalike("look-1"))
            stored = await hotel.command("look-1", "failed")  # the resource stands
            assert stored["error"] == _lookalike("look-1")
            queued = await hotel.api.http.post(
                url,
                json={**body, "mode": "queue", "command_id": "look-2"},
                headers=hotel.owner.headers,
            )
            expect(queued, 202)
            assert (await hotel.command("look-2", "failed"))["error"] == _lookalike("look-2")
        assert [c["id"] for c in dev.commands] == ["look-1", "look-2"]  # each ran, once


def _answer(hotel_id: str, command_id: str, *, id_reused: bool) -> bridge_pb2.RemoteCommandResult:
    result = common_pb2.CommandResult(
        command_id=command_id,
        device_id="r101-thermostat",
        status=common_pb2.COMMAND_STATUS_FAILED,
        error=_lookalike(command_id),
    )
    result.completed_at.FromMilliseconds(now_ms())
    return bridge_pb2.RemoteCommandResult(result=result, id_reused=id_reused)


async def test_a_direct_answer_is_a_refusal_by_its_flag_alone(hotel: CloudHotel) -> None:
    store, hotel_id = hotel.api.relay.store, hotel.hotel_id
    now = now_ms()
    body = {"name": "set_setpoint", "params": {}, "by": "cloud:x", "timeout_ms": 5000}
    rows = [
        Item(hotel_id, c, ItemKind.COMMAND, "r101-thermostat", body, "u", now, now + 60_000).row()
        for c in ("failed-1", "refused-1")
    ]
    async with store.write() as conn:
        await conn.execute(downlink.insert(), rows)
    for command_id, flag in (("failed-1", False), ("refused-1", True)):
        plan = Plan.answer(_answer(hotel_id, command_id, id_reused=flag), hotel_id)
        assert plan.reused == ({command_id} if flag else set())
        await store.run(sync.results, plan)
    async with store.read() as conn:
        states = dict((await conn.execute(sa.select(downlink.c.item_id, downlink.c.state))).all())
        stored = dict(
            (
                await conn.execute(sa.select(command_results.c.command_id, command_results.c.error))
            ).all()
        )
    # The failure in the refusal's words: stored, its row done. The refusal: neither.
    assert states == {"failed-1": "done"}
    assert stored == {"failed-1": _lookalike("failed-1")}
