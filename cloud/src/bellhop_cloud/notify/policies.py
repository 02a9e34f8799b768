"""A hotel's notification policy and its attempts, as the REST API reads and writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from bellhop_bridge.notify_core import Policy
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.db.schema import notifications, notify_attempts, notify_policies
from bellhop_cloud.db.store import utcnow

__all__ = ["Stored", "attempts", "read", "write"]


@dataclass(frozen=True, slots=True)
class Stored:
    policy: Policy
    version: int
    updated_at: datetime | None


async def read(conn: AsyncConnection, hotel_id: str, *, lock: bool = False) -> Stored:
    query = sa.select(notify_policies).where(notify_policies.c.hotel_id == hotel_id)
    if lock and conn.dialect.name == "postgresql":
        query = query.with_for_update()  # two PUTs at once: the second sees the first
    row = (await conn.execute(query)).first()
    if row is None:
        return Stored(Policy(), 0, None)
    return Stored(Policy.from_json(row.policy), row.version, row.updated_at)


async def write(
    conn: AsyncConnection, hotel_id: str, policy: Policy, before: Stored, actor_id: str
) -> Stored:
    """Replace the hotel's policy (read with `lock=True` in the same transaction)."""
    version, now = before.version + 1, utcnow()
    values = {
        "policy": policy.to_json(),
        "version": version,
        "updated_at": now,
        "updated_by": actor_id,
    }
    if before.version == 0:
        await conn.execute(notify_policies.insert().values(hotel_id=hotel_id, **values))
    else:
        await conn.execute(
            notify_policies.update().where(notify_policies.c.hotel_id == hotel_id).values(**values)
        )
    return Stored(policy, version, now)


async def attempts(
    conn: AsyncConnection, hotel_id: str, *, limit: int, before: int | None
) -> list[Any]:
    """The hotel's attempts, newest first; `before`: the last id of the previous page."""
    a, n = notify_attempts, notifications
    query = (
        sa.select(
            a.c.id,
            a.c.notification_id,
            a.c.number,
            a.c.outcome,
            a.c.error,
            a.c.started_ms,
            a.c.finished_ms,
            n.c.alert_id,
            n.c.transition,
            n.c.contact_id,
            n.c.channel_id,
            n.c.state,
        )
        .select_from(a.join(n, n.c.id == a.c.notification_id))
        .where(a.c.hotel_id == hotel_id)
        .order_by(a.c.id.desc())
        .limit(limit)
    )
    if before is not None:
        query = query.where(a.c.id < before)
    return list((await conn.execute(query)).all())
