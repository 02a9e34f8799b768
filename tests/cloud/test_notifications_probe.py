"""Probing the notification routes: tampered cursors, hostile URLs, other tenants."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from bellhop_cloud.notify.worker import Claimed, Notifier
from bellhop_cloud.relay import Relay

from tests.cloud.support import Api, expect


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("text", ["²", "9" * 150, str(2**63), "-1", " 5", "0x10", "1_000"])
async def test_a_tampered_attempts_cursor_is_a_422_naming_it(api: Api, text: str) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    answer = await api.http.get(
        f"/v1/hotels/{hotel_id}/notifications/attempts",
        params={"cursor": cursor(text)},
        headers=owner.headers,
    )
    problem: Any = expect(answer, 422)
    assert [e["loc"] for e in problem["errors"]] == [["query", "cursor"]]


async def test_a_private_target_is_refused_unless_the_relay_lists_its_network(
    api: Api, relay: Relay
) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    path = f"/v1/hotels/{hotel_id}/notifications"
    listed = relay.config.notify_private_targets
    assert listed == ("127.0.0.0/8",)  # the suite's receivers listen on loopback
    for url in [
        "json://169.254.169.254/latest/meta-data?token=s3cret",
        "jsons://10.1.2.3/hook",
        "json://[::1]:8080/x",
        "mailto://user:s3cret@example.com?smtp=192.168.0.10&to=a@example.com",
    ]:
        body = {"contacts": [{"name": "Desk", "channels": [{"url": url}]}]}
        problem = expect(await api.http.put(path, json=body, headers=owner.headers), 422)
        assert [e["loc"] for e in problem["errors"]] == [
            ["body", "contacts", "0", "channels", "0", "url"]
        ]
        text = json.dumps(problem)
        assert "s3cret" not in text
        assert "169.254" not in text
        assert "10.1.2.3" not in text
    # Loopback is listed in this suite's configuration, so it is accepted.
    body = {"contacts": [{"name": "Desk", "channels": [{"url": "json://127.0.0.1:9/x"}]}]}
    expect(await api.http.put(path, json=body, headers=owner.headers), 200)


async def test_the_worker_does_not_send_to_a_name_resolving_outside_its_reach(
    relay: Relay,
) -> None:
    strict = relay.config.model_copy(update={"notify_private_targets": ()})
    notifier = Notifier(relay.store, strict)
    async with notifier.threads():
        claimed = Claimed(1, 1, "k", "json://localhost.:9/x", "t", "b")
        why = await notifier._send(claimed)
    assert why is not None
    assert "private" in why


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:s3cret@files.example.com/x",
        "json://user:s3cret@hooks.example.com/\u202ex",
        "json://user:s3cret@hooks.example.com/" + "x" * 3000,
        "json://user:s3cret@hooks.example.com/x y",
    ],
)
async def test_a_refused_url_is_never_echoed(api: Api, url: str) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    body = {"contacts": [{"name": "Desk", "channels": [{"url": url}]}]}
    answer = await api.http.put(
        f"/v1/hotels/{hotel_id}/notifications", json=body, headers=owner.headers
    )
    problem = expect(answer, 422)
    assert "s3cret" not in answer.text, problem
    assert problem["errors"][0]["loc"][:6] == ["body", "contacts", "0", "channels", "0", "url"]


async def test_only_whole_hotel_managers_see_or_set_the_policy(api: Api) -> None:
    """Staff, and a manager limited to some rooms, neither read the channels nor set them;
    a manager of the whole hotel does."""
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    path = f"/v1/hotels/{hotel_id}/notifications"
    body = {"contacts": [{"name": "Desk", "channels": [{"url": "json://hooks.example.com/x"}]}]}
    expect(await api.http.put(path, json=body, headers=owner.headers), 200)
    staff, roomed, manager = [await api.account(n) for n in ("staff", "roomed", "manager")]
    await api.grant(owner, org_id, staff, "staff", hotel_id=hotel_id)
    await api.grant(owner, org_id, roomed, "manager", hotel_id=hotel_id, rooms=["r000"])
    await api.grant(owner, org_id, manager, "manager", hotel_id=hotel_id)
    for who in (staff, roomed):
        for method in ("GET", "PUT"):
            answer = await api.http.request(
                method, path, json=body if method == "PUT" else None, headers=who.headers
            )
            assert answer.status_code == 403, (method, answer.text)
            assert "hooks.example.com" not in answer.text
        attempts = await api.http.get(f"{path}/attempts", headers=who.headers)
        assert attempts.status_code == 403
    shown = expect(await api.http.get(path, headers=manager.headers), 200)
    assert shown["contacts"][0]["channels"][0]["url"] == "json://hooks.example.com/***"
