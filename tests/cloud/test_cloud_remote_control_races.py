"""Remote control when requests meet (docs/remote-control.md): the same fleet or the same
acknowledgement sent at once, as a client retrying after a timeout does, is queued once and
every caller is answered; an acknowledgement whose row expired before the gateway had it is
queued again. On SQLite and on PostgreSQL, where such requests run side by side.
"""

from __future__ import annotations

import asyncio
import time

import sqlalchemy as sa
from bellhop_cloud.db.schema import audit_log, downlink

from tests.cloud.support import Account, Api, expect

CALLERS = 6


async def _hotel(api: Api) -> tuple[Account, str]:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Race Hotels")
    hotel_id = await api.hotel(owner, org_id, "Race Hotel")
    await api.seed_devices(hotel_id, 4, rooms=2)
    return owner, hotel_id


async def _rows(api: Api, hotel_id: str) -> list[tuple[str, str]]:
    async with api.relay.store.read() as conn:
        found = await conn.execute(
            sa.select(downlink.c.item_id, downlink.c.state)
            .where(downlink.c.hotel_id == hotel_id)
            .order_by(downlink.c.item_id)
        )
        return [(row.item_id, row.state) for row in found]


async def _audited(api: Api, action: str) -> int:
    async with api.relay.store.read() as conn:
        count = await conn.execute(
            sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == action)
        )
        return int(count.scalar_one())


async def test_the_same_fleet_sent_at_once_is_queued_once_and_every_caller_answered(
    api: Api,
) -> None:
    owner, hotel_id = await _hotel(api)
    body = {"name": "noop", "mode": "queue", "fleet_id": "f-1", "target": {"all_devices": True}}
    url = f"/v1/hotels/{hotel_id}/commands"
    answers = await asyncio.gather(
        *(api.http.post(url, headers=owner.headers, json=body) for _ in range(CALLERS))
    )
    assert [a.status_code for a in answers] == [202] * CALLERS, [a.text for a in answers]
    ids = {tuple(sorted(c["command_id"] for c in a.json()["commands"])) for a in answers}
    assert len(ids) == 1  # every caller was told of the same commands
    rows = await _rows(api, hotel_id)
    assert len(rows) == 4  # one per device, not one per caller
    assert sorted(r[0] for r in rows) == sorted(next(iter(ids)))


async def test_the_same_alert_acknowledged_at_once_is_queued_once(api: Api) -> None:
    owner, hotel_id = await _hotel(api)
    await api.raise_alert(hotel_id, "al-1")
    url = f"/v1/hotels/{hotel_id}/alerts/al-1/acknowledge"
    before = await _audited(api, "alert.acknowledged")
    answers = await asyncio.gather(
        *(api.http.post(url, headers=owner.headers, json={}) for _ in range(CALLERS))
    )
    assert [a.status_code for a in answers] == [202] * CALLERS, [a.text for a in answers]
    assert {a.json()["outcome"] for a in answers} == {"queued"}
    assert await _rows(api, hotel_id) == [("ack:al-1", "queued")]
    assert await _audited(api, "alert.acknowledged") == before + 1
    # Its time runs out before the gateway is back: acknowledging again queues it anew.
    async with api.relay.store.write() as conn:
        await conn.execute(
            downlink.update()
            .where(downlink.c.hotel_id == hotel_id, downlink.c.item_id == "ack:al-1")
            .values(state="expired", expires_at=1)
        )
    again = expect(await api.http.post(url, headers=owner.headers, json={}), 202)
    assert again["outcome"] == "queued"
    assert await _rows(api, hotel_id) == [("ack:al-1", "queued")]
    async with api.relay.store.read() as conn:
        expires_at = (
            await conn.execute(
                sa.select(downlink.c.expires_at).where(downlink.c.item_id == "ack:al-1")
            )
        ).scalar_one()
    assert expires_at > time.time() * 1000
    assert await _audited(api, "alert.acknowledged") == before + 2
