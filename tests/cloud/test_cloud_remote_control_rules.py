"""Remote control's rules at the relay's REST boundary (docs/remote-control.md): exact
numbers, command ids that never hold a `:`, strict JSON types, an optional note, and
nothing learnt about what a room-limited caller cannot see."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from bellhop_cloud.api import routes_commands
from bellhop_cloud.db.schema import downlink

from tests.cloud.support import Account, Api, expect

SAFE = 2**53


async def world(api: Api) -> tuple[Account, Account, str]:
    """An owner, staff limited to room r000 (dev-0000, dev-0002; r001 holds dev-0001,
    dev-0003), and the hotel."""
    owner = await api.account("owner")
    staff = await api.account("staff")
    org = await api.org(owner, "O")
    hotel = await api.hotel(owner, org, "H")
    await api.seed_devices(hotel, 4, rooms=2)
    await api.grant(owner, org, staff, "staff", hotel_id=hotel, rooms=["r000"])
    return owner, staff, hotel


async def send(api: Api, who: Account, hotel: str, body: dict[str, Any], device: str = "") -> Any:
    path = f"/devices/{device}/commands" if device else "/commands"
    return await api.http.post(
        f"/v1/hotels/{hotel}{path}", json={"mode": "queue", **body}, headers=who.headers
    )


def refused(response: Any, *loc: str) -> dict[str, Any]:
    body: dict[str, Any] = expect(response, 422)
    assert body["code"] == "invalid_request"
    assert [e["loc"] for e in body["errors"]] == [["body", *loc]], body["errors"]
    return body


async def test_numbers_are_exact_or_refused_naming_the_field(api: Api) -> None:
    owner, _, hotel = await world(api)
    for edge in (SAFE, -SAFE, 1.5, True, None, "x"):
        queued = expect(
            await send(api, owner, hotel, {"name": "noop", "params": {"x": edge}}, "dev-0000"), 202
        )
        async with api.relay.store.read() as conn:
            body = (
                await conn.execute(
                    sa.select(downlink.c.body).where(downlink.c.item_id == queued["command_id"])
                )
            ).scalar_one()
        assert body["params"] == {"x": edge}  # kept as it came, not rounded
    for beyond in (SAFE + 1, -(SAFE + 1), 10**400, 1e300):
        answer = await send(
            api, owner, hotel, {"name": "noop", "params": {"x": beyond}}, "dev-0000"
        )
        body = refused(answer, "params", "x")
        assert "2**53" in body["errors"][0]["msg"]


async def test_command_and_fleet_ids_never_hold_a_colon(api: Api) -> None:
    owner, _, hotel = await world(api)
    # What the relay names its own items: an alert's acknowledgement, a desired change.
    for taken in ("ack:al-1", "desired:x", "a:b"):
        answer = await send(api, owner, hotel, {"name": "noop", "command_id": taken}, "dev-0000")
        refused(answer, "command_id")
        answer = await send(
            api, owner, hotel, {"name": "noop", "fleet_id": taken, "target": {"all_devices": True}}
        )
        refused(answer, "fleet_id")
    expect(
        await send(api, owner, hotel, {"name": "noop", "command_id": "a.b_c-1"}, "dev-0000"), 202
    )


@pytest.mark.parametrize(
    ("extra", "loc"),
    [
        ({"timeout_s": "10"}, ("timeout_s",)),
        ({"timeout_s": True}, ("timeout_s",)),
        ({"timeout_s": 1e-9}, ("timeout_s",)),
        ({"timeout_s": 0.09}, ("timeout_s",)),
        ({"ttl_s": "1e5"}, ("ttl_s",)),
        ({"mode": "QUEUE"}, ("mode",)),
    ],
)
async def test_a_command_body_is_strict_json(
    api: Api, extra: dict[str, Any], loc: tuple[str, ...]
) -> None:
    owner, _, hotel = await world(api)
    refused(await send(api, owner, hotel, {"name": "noop", **extra}, "dev-0000"), *loc)


async def test_the_shortest_wait_is_a_tenth_of_a_second(api: Api) -> None:
    owner, _, hotel = await world(api)
    sent = await send(api, owner, hotel, {"name": "noop", "timeout_s": 0.1}, "dev-0000")
    queued = expect(sent, 202)
    async with api.relay.store.read() as conn:
        body = (
            await conn.execute(
                sa.select(downlink.c.body).where(downlink.c.item_id == queued["command_id"])
            )
        ).scalar_one()
    assert body["timeout_ms"] == 100  # never 0, which the gateway reads as its default


async def test_a_fleet_target_is_strict_json(api: Api) -> None:
    owner, _, hotel = await world(api)
    for target, loc in (
        ({"all_devices": "yes"}, ("target", "all_devices")),
        ({"all_devices": 1}, ("target", "all_devices")),
        ({"floors": ["0"]}, ("target", "floors", "0")),
        ({"floors": [0.5]}, ("target", "floors", "0")),
        ({"floors": [True]}, ("target", "floors", "0")),
    ):
        refused(await send(api, owner, hotel, {"name": "noop", "target": target}), *loc)
    # A whole number is an integer however JSON writes it (2.0 is 2, as JSON Schema says).
    fleet = expect(
        await send(api, owner, hotel, {"name": "noop", "target": {"floors": [0.0]}}), 202
    )
    assert fleet["targeted"] == 4


async def test_an_acknowledgement_needs_no_body(api: Api) -> None:
    owner, _, hotel = await world(api)
    await api.raise_alert(hotel, "al-1")
    url = f"/v1/hotels/{hotel}/alerts/al-1/acknowledge"
    answer = expect(await api.http.post(url, headers=owner.headers), 202)
    assert answer == {"alert_id": "al-1", "outcome": "queued"}
    async with api.relay.store.read() as conn:
        body = (
            await conn.execute(sa.select(downlink.c.body).where(downlink.c.item_id == "ack:al-1"))
        ).scalar_one()
    assert body["note"] == ""
    strict = await api.http.post(url, json={"note": 1}, headers=owner.headers)
    refused(strict, "note")


def _shape(response: Any) -> tuple[int, dict[str, Any]]:
    body = dict(response.json())
    body.pop("instance", None)
    return response.status_code, body


async def test_a_fleet_learns_nothing_of_rooms_the_caller_cannot_see(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, staff, hotel = await world(api)
    hidden, missing = [], []
    for hidden_target, missing_target in (
        ({"device_ids": ["dev-0001"]}, {"device_ids": ["dev-9999"]}),
        ({"room_ids": ["r001"]}, {"room_ids": ["r999"]}),
    ):
        hidden.append(
            _shape(await send(api, staff, hotel, {"name": "noop", "target": hidden_target}))
        )
        missing.append(
            _shape(await send(api, staff, hotel, {"name": "noop", "target": missing_target}))
        )
    assert hidden == missing
    assert {status for status, _ in hidden} == {404}
    # Only the devices the caller sees are targeted, and counted against the limit.
    monkeypatch.setattr(routes_commands, "MAX_FLEET", 2)
    fleet = expect(
        await send(api, staff, hotel, {"name": "noop", "target": {"all_devices": True}}), 202
    )
    assert sorted(c["device_id"] for c in fleet["commands"]) == ["dev-0000", "dev-0002"]
    mixed = {"device_ids": ["dev-0000", "dev-0001", "dev-0003"]}
    fleet = expect(await send(api, staff, hotel, {"name": "noop", "target": mixed}), 202)
    assert [c["device_id"] for c in fleet["commands"]] == ["dev-0000"]


async def test_an_id_taken_in_a_room_the_caller_cannot_see_answers_as_any_reuse(
    api: Api,
) -> None:
    owner, staff, hotel = await world(api)
    expect(
        await send(api, owner, hotel, {"name": "unlock", "command_id": "theirs"}, "dev-0001"), 202
    )
    expect(await send(api, staff, hotel, {"name": "unlock", "command_id": "mine"}, "dev-0000"), 202)
    other = await send(api, staff, hotel, {"name": "unlock", "command_id": "theirs"}, "dev-0000")
    own = await send(api, staff, hotel, {"name": "lock", "command_id": "mine"}, "dev-0000")
    # The same answer, word for word but the id it repeats: nothing of the other command.
    assert _shape(other)[0] == _shape(own)[0] == 409
    assert _shape(other)[1] == {
        **_shape(own)[1],
        "detail": _shape(own)[1]["detail"].replace("'mine'", "'theirs'"),
    }
    assert other.json()["code"] == "command_id_reused"
    hidden = await api.http.get(f"/v1/hotels/{hotel}/commands/theirs", headers=staff.headers)
    assert expect(hidden, 404)["detail"] == "no such command"
