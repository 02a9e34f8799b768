"""The notification worker on two relay nodes sharing one PostgreSQL database.

The claim reads due rows `FOR UPDATE SKIP LOCKED`: a node passes over rows another
transaction holds instead of waiting for them, so two workers claim disjoint rows and
each row is sent once. Shown first with rows held by an open transaction (the node
claims others at once), then with both nodes' passes run at the same time until the
queue is empty. The webhook receiver sees every row's key exactly once, and each
node's counters add up to the rows sent.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, Final

import pytest
import sqlalchemy as sa
from bellhop_cloud.db.schema import alerts, notifications, notify_attempts
from bellhop_cloud.notify import queue as notify_queue
from bellhop_cloud.notify import worker
from bellhop_cloud.notify.worker import Notifier
from bellhop_cloud.relay import Relay
from sqlalchemy.engine import Connection

from tests.cloud.bridging import CloudHotel
from tests.cloud.support import expect
from tests.support.webhook import WebhookReceiver

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
ALERTS: Final = 30
BATCH: Final = 4  # rows per claim: many small passes, so the two nodes' claims meet
HELD: Final = 5


def raise_alerts(conn: Connection, hotel_id: str, count: int, now: datetime) -> None:
    """`count` alerts raised, their notifications queued in the same transaction."""
    changed = {
        f"a-{n:02d}": {"state": "raised", "kind": "breach", "severity": "critical"}
        for n in range(count)
    }
    notify_queue.on_alerts(conn, hotel_id, changed, now)
    raised = int(now.timestamp() * 1000)
    conn.execute(
        alerts.insert(),
        [
            {"hotel_id": hotel_id, "alert_id": a, **row, "device_id": "d1", "message": "breach"}
            | {"raised_at": raised}
            for a, row in changed.items()
        ],
    )


def sent(notifier: Notifier) -> float:
    value = notifier.metrics.registry.get_sample_value
    return value("bellhop_cloud_notifications_sent_total", {"scheme": "json"}) or 0.0


async def states(relay: Relay) -> dict[int, str]:
    async with relay.store.read() as conn:
        found = await conn.execute(sa.select(notifications.c.id, notifications.c.state))
    return {i: s for i, s in found}


@pytest.mark.timeout(60)
async def test_two_nodes_claim_disjoint_rows_and_send_each_once(
    hotel: CloudHotel, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "BATCH", BATCH)
    other = await Relay.open(relay.config.model_copy(update={"node_id": "node-b"}))
    try:
        async with WebhookReceiver() as hook:
            body: dict[str, Any] = {
                "contacts": [{"name": "Desk", "channels": [{"url": hook.apprise_url()}]}]
            }
            answer = await hotel.api.http.put(
                f"/v1/hotels/{hotel.hotel_id}/notifications", json=body, headers=hotel.owner.headers
            )
            expect(answer, 200)
            await relay.store.run(raise_alerts, hotel.hotel_id, ALERTS, datetime.now(UTC))
            a = Notifier(relay.store, relay.config)
            b = Notifier(other.store, other.config)
            async with a.threads(), b.threads():
                # Rows the claim would take first, held by another transaction: node b
                # passes over them at once (without SKIP LOCKED it would wait here).
                async with relay.store.write() as held:
                    first = (
                        sa.select(notifications.c.id)
                        .where(notifications.c.state == "queued")
                        .order_by(notifications.c.due_ms, notifications.c.id)
                        .limit(HELD)
                        .with_for_update()
                    )
                    locked = set((await held.execute(first)).scalars())
                    assert await asyncio.wait_for(b.run_once(), 10) == BATCH
                    after = await states(relay)
                    assert {after[i] for i in locked} == {"queued"}
                    assert sum(s == "sent" for s in after.values()) == BATCH
                # Both nodes at once until the queue is empty.
                deadline = time.monotonic() + 30
                while any(s == "queued" for s in (await states(relay)).values()):
                    assert time.monotonic() < deadline, "the queue did not drain"
                    await asyncio.gather(a.run_once(), b.run_once())

            keys = [r.key for r in hook.requests]
            assert len(keys) == ALERTS
            assert len(set(keys)) == ALERTS  # no row sent twice
            assert set((await states(relay)).values()) == {"sent"}
            async with relay.store.read() as conn:
                numbers = (await conn.execute(sa.select(notify_attempts.c.number))).scalars()
                assert sorted(numbers) == [1] * ALERTS  # one attempt per row
            assert sent(a) > 0
            assert sent(b) > 0
            assert sent(a) + sent(b) == ALERTS
    finally:
        await other.close()
