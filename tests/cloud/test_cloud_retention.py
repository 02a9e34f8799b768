"""History past its retention is pruned; current state and open alerts never are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from bellhop_cloud.bridge import retention
from bellhop_cloud.bridge.retention import DAY_MS, Retention
from bellhop_cloud.db.schema import alerts, device_events, downlink, telemetry

from tests.cloud.support import Api

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


async def test_old_history_goes_current_state_and_open_alerts_stay(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    await api.seed_devices(hotel_id, 2)
    relay = api.relay
    config = relay.config.model_copy(
        update={"telemetry_retention_days": 30, "events_retention_days": 60}
    )
    old, recent = NOW_MS - 31 * DAY_MS, NOW_MS - 29 * DAY_MS
    alert = {
        "hotel_id": hotel_id,
        "kind": "breach",
        "severity": "critical",
        "device_id": "dev-0001",
        "message": "door forced",
        "raised_at": NOW_MS - 400 * DAY_MS,
    }
    async with relay.store.write() as conn:
        await conn.execute(
            telemetry.insert(),
            [
                {"hotel_id": hotel_id, "device_id": "dev-0001", "metric": "t", "ts": ts, "value": 1}
                for ts in (old, recent)
            ],
        )
        await conn.execute(
            device_events.insert(),
            [
                {
                    "hotel_id": hotel_id,
                    "device_id": "dev-0001",
                    "kind": "door",
                    "ts": ts,
                    "data": {},
                }
                for ts in (NOW_MS - 61 * DAY_MS, NOW_MS - 59 * DAY_MS)
            ],
        )
        await conn.execute(
            alerts.insert(),
            [
                {
                    **alert,
                    "alert_id": "ended",
                    "state": "cleared",
                    "cleared_at": old - 400 * DAY_MS,
                },
                {**alert, "alert_id": "open", "state": "raised", "cleared_at": None},
            ],
        )
        item = {
            "hotel_id": hotel_id,
            "kind": "command",
            "device_id": "dev-0001",
            "body": {},
            "requested_by": owner.user_id,
            "expires_at": 0,
            "sends": 1,
        }
        await conn.execute(
            downlink.insert(),
            [
                {
                    **item,
                    "item_id": "old-done",
                    "state": "done",
                    "requested_at": old - 400 * DAY_MS,
                },
                {**item, "item_id": "old-queued", "state": "queued", "requested_at": 0},
                {**item, "item_id": "new-done", "state": "done", "requested_at": NOW_MS},
            ],
        )
    deleted = await Retention(relay.store, config).prune(NOW)
    # Answered long ago: gone; still outstanding (it will expire) or recent: kept.
    assert deleted["downlink"] == 1
    assert deleted["telemetry"] == 1
    assert deleted["device_events"] == 1
    assert deleted["alerts"] == 1
    async with relay.store.read() as conn:
        assert (await conn.execute(sa.select(telemetry.c.ts))).scalars().all() == [recent]
        assert (await conn.execute(sa.select(alerts.c.alert_id))).scalars().all() == ["open"]
    # Devices (current state) are untouched.
    page = await api.http.get(f"/v1/hotels/{hotel_id}/devices", headers=owner.headers)
    assert len(page.json()["items"]) == 2


async def test_a_large_history_is_pruned_in_short_transactions(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the chunk size the pass goes on chunk after chunk until nothing old is left,
    each a transaction of its own, and keeps what is recent."""
    owner = await api.account("owner")
    org_id = await api.org(owner, "Org")
    hotel_id = await api.hotel(owner, org_id, "Hotel")
    relay = api.relay
    config = relay.config.model_copy(update={"telemetry_retention_days": 30})
    monkeypatch.setattr(retention, "CHUNK", 7)
    old = [NOW_MS - 31 * DAY_MS - i for i in range(50)]
    recent = [NOW_MS - i for i in range(5)]
    async with relay.store.write() as conn:
        await conn.execute(
            telemetry.insert(),
            [
                {
                    "hotel_id": hotel_id,
                    "device_id": f"d{ts % 3}",
                    "metric": "t",
                    "ts": ts,
                    "value": 1,
                }
                for ts in old + recent
            ],
        )
    transactions = 0
    write = relay.store.write

    def counted() -> Any:
        nonlocal transactions
        transactions += 1
        return write()

    monkeypatch.setattr(relay.store, "write", counted)
    deleted = await Retention(relay.store, config).prune(NOW)
    assert deleted["telemetry"] == 50
    assert transactions >= 50 // 7 + 1
    async with relay.store.read() as conn:
        kept = (await conn.execute(sa.select(telemetry.c.ts))).scalars().all()
    assert sorted(kept) == sorted(recent)
