"""Alert notifications through the relay: the policy resource, and delivery from a real
gateway's breach alert to a local webhook receiver and SMTP server, with a failing
first channel, escalation, and an acknowledgement that stops it.

The worker's passes are driven by the test (`Notifier.run_once(now)`), at the times
the schedule names, so escalation is shown without waiting for its minutes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from bellhop_cloud.db.schema import audit_log, notifications
from bellhop_cloud.notify import queue as notify_queue
from bellhop_cloud.notify.worker import Notifier, now_ms
from bellhop_cloud.relay import Relay
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import Bridge, CloudHotel, EdgeSite, eventually
from tests.cloud.support import expect
from tests.support.mosquitto import free_port
from tests.support.smtp import SmtpReceiver
from tests.support.webhook import WebhookReceiver

SECRET = "hunter2-not-for-display"


async def put_policy(hotel: CloudHotel, body: dict[str, Any], status: int = 200) -> Any:
    answer = await hotel.api.http.put(
        f"/v1/hotels/{hotel.hotel_id}/notifications", json=body, headers=hotel.owner.headers
    )
    return expect(answer, status)


def contact(name: str, *urls: str, after_s: int = 60, **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "escalate_after_s": after_s,
        "channels": [{"url": u} for u in urls],
        **more,
    }


async def test_the_policy_is_validated_masked_kept_by_id_and_audited(
    hotel: CloudHotel, relay: Relay
) -> None:
    url = f"json://bellhop:{SECRET}@hooks.example.com/alerts?token={SECRET}"
    first = await put_policy(hotel, {"contacts": [contact("Desk", url, kinds=["breach"])]})
    (desk,) = first["contacts"]
    assert desk["channels"][0]["url"] == "json://***@hooks.example.com/***"
    assert first["version"] == 1
    # Renamed, the channel sent by id alone: the stored URL stays without being resent.
    kept = {"name": "Front desk", "channels": [{"id": desk["channels"][0]["id"]}]}
    second = await put_policy(hotel, {"contacts": [{**kept, "id": desk["id"]}]})
    assert second["contacts"][0]["channels"] == desk["channels"]
    async with relay.store.read() as conn:
        policy = await conn.run_sync(notify_queue.policy_of, hotel.hotel_id)
    assert policy.contacts[0].channels[0].url == url
    assert policy.contacts[0].name == "Front desk"

    refusals = [
        (contact("X", "file:///etc/passwd"), ["body", "contacts", "0", "channels", "0", "url"]),
        (contact("X", "mailto://"), ["body", "contacts", "0", "channels", "0", "url"]),
        (
            {"name": "X", "channels": [{"id": "ch_0000000000000000"}]},
            ["body", "contacts", "0", "channels", "0", "id"],
        ),
        (contact("Bell\x07", "json://h/x"), ["body", "contacts", "0", "name"]),
        (contact("X", "json://h/x", after_s=0), ["body", "contacts", "0", "escalate_after_s"]),
        (contact("X", *["json://h/x"] * 6), ["body", "contacts", "0", "channels"]),
    ]
    for body, loc in refusals:
        problem = await put_policy(hotel, {"contacts": [body]}, 422)
        # The boundary names list items by number, the schema by text: either will do.
        assert [[str(p) for p in e["loc"]][: len(loc)] for e in problem["errors"]] == [loc], (
            body,
            problem,
        )
    shown = await hotel.api.http.get(
        f"/v1/hotels/{hotel.hotel_id}/notifications", headers=hotel.owner.headers
    )
    assert expect(shown, 200)["version"] == 2
    assert SECRET not in shown.text

    async with relay.store.read() as conn:
        entries = (
            (
                await conn.execute(
                    sa.select(audit_log.c.detail).where(audit_log.c.action == "notifications.set")
                )
            )
            .scalars()
            .all()
        )
    assert [e["version"] for e in entries] == [1, 2]
    assert all(SECRET not in str(e) for e in entries)

    viewer = await hotel.api.account("viewer")
    await hotel.api.grant(hotel.owner, hotel.org_id, viewer, "staff", hotel_id=hotel.hotel_id)
    for method in ("GET", "PUT"):
        answer = await hotel.api.http.request(
            method,
            f"/v1/hotels/{hotel.hotel_id}/notifications",
            json={"contacts": []} if method == "PUT" else None,
            headers=viewer.headers,
        )
        assert answer.status_code == 403, (method, answer.text)


async def attempts(hotel: CloudHotel) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await hotel.get("/notifications/attempts", **params)
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            return items[::-1]  # oldest first


async def test_fallback_escalation_and_an_acknowledgement_that_stops_it(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge, relay: Relay
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/nobody"  # nothing listens: every send fails
    async with (
        WebhookReceiver() as desk,
        WebhookReceiver() as owner,
        SmtpReceiver() as smtp,
    ):
        policy = await put_policy(
            hotel,
            {
                "contacts": [
                    contact("Desk", closed, desk.apprise_url("/desk"), after_s=60),
                    contact("Manager", smtp.apprise_url("night@example.com"), after_s=60),
                    contact("Owner", owner.apprise_url("/owner")),
                    contact("Gas only", owner.apprise_url("/gas"), kinds=["gas"]),
                ]
            },
        )
        ids = {c["name"]: c["id"] for c in policy["contacts"]}
        config = relay.config.model_copy(
            update={"notify_attempts": 2, "notify_retry_base_s": 1.0, "notify_send_timeout_s": 10}
        )
        notifier = Notifier(relay.store, config)
        async with Gateway(site.config(bridge.url)), notifier.threads():
            await hotel.online("r101-door")
            t0 = now_ms()
            await site.breach()
            (alert,) = await eventually(lambda: hotel.get("/alerts", state="open"), "the alert")
            # The desk's first channel fails, once and again after its back-off...
            assert await notifier.run_once(t0 + 5_000) == 1
            assert await notifier.run_once(t0 + 5_500) == 0  # backing off
            assert await notifier.run_once(t0 + 6_000) == 1
            # ... then the second channel is tried at once, and delivers.
            assert await notifier.run_once(t0 + 6_000) == 1
            (got,) = await desk.wait_for(1)
            assert got.body["title"] == "Bellhop: critical breach in room 101"
            assert (
                got.key
                == f"{hotel.hotel_id}/{alert['alert_id']}/raised/{ids['Desk']}/"
                + (policy["contacts"][0]["channels"][1]["id"])
            )
            # Not acknowledged within the desk's 60 s: the manager is told.
            assert await notifier.run_once(t0 + 30_000) == 0
            assert await notifier.run_once(t0 + 66_000) == 1
            (mail,) = await smtp.wait_for(1)
            assert mail.recipients == ("night@example.com",)
            assert alert["alert_id"] in mail.text
            # Acknowledged before the owner's turn: the owner is never told.
            acked = await hotel.api.http.post(
                f"/v1/hotels/{hotel.hotel_id}/alerts/{alert['alert_id']}/acknowledge",
                json={},
                headers=hotel.owner.headers,
            )
            assert expect(acked, 200)["outcome"] in ("acknowledged", "queued")
            assert await notifier.run_once(t0 + 1_000_000) == 0
            assert owner.requests == []

        found = await attempts(hotel)
        assert [(a["contact_id"], a["number"], a["outcome"]) for a in found] == [
            (ids["Desk"], 1, "failed"),
            (ids["Desk"], 2, "failed"),
            (ids["Desk"], 1, "sent"),
            (ids["Manager"], 1, "sent"),
        ]
        async with relay.store.read() as conn:
            rows = dict(
                (
                    await conn.execute(
                        sa.select(notifications.c.contact_id, notifications.c.state).where(
                            notifications.c.contact_id == ids["Owner"]
                        )
                    )
                ).all()
            )
        assert rows == {ids["Owner"]: "cancelled"}
        assert len(desk.requests) == 1
        assert len(smtp.mails) == 1
        # The worker's counters, by scheme; nothing left in the queue.
        value = notifier.metrics.registry.get_sample_value
        assert value("bellhop_cloud_notifications_sent_total", {"scheme": "json"}) == 1
        assert value("bellhop_cloud_notifications_sent_total", {"scheme": "mailto"}) == 1
        assert value("bellhop_cloud_notifications_failed_total", {"scheme": "json"}) == 2
        assert value("bellhop_cloud_notifications_unknown_total") == 0
        await notifier.count_queue(now_ms(), force=True)
        for state in ("due", "later", "sending"):
            assert value("bellhop_cloud_notifications_queue", {"state": state}) == 0


async def test_one_transition_queues_each_contact_and_channel_once(
    hotel: CloudHotel, relay: Relay
) -> None:
    """The unique key holds however often the same change is applied (a replay after a
    restart, two nodes): the second apply adds no row."""
    await put_policy(hotel, {"contacts": [contact("Desk", "json://h/1", "json://h/2")]})
    change = {"a-1": {"state": "raised", "kind": "breach", "severity": "critical"}}
    for _ in range(3):
        await relay.store.run(notify_queue.on_alerts, hotel.hotel_id, change, datetime.now(UTC))
    async with relay.store.read() as conn:
        count = (
            await conn.execute(
                sa.select(sa.func.count()).where(notifications.c.hotel_id == hotel.hotel_id)
            )
        ).scalar()
    assert count == 2
