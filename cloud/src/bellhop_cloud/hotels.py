"""Hotels, rooms and devices as the cloud knows them, with freshness.

Rows are written by the bridge (later) through `upsert_rooms`/`upsert_devices`
and read by the REST API (devices through `db.reads`, the hot path). `stale`
is computed at read time: never seen, or not seen within the window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.db.schema import devices, grants, hotels, rooms
from bellhop_cloud.db.store import new_id, utcnow
from bellhop_cloud.errors import NotFound
from bellhop_cloud.orgs import grant_from_row
from bellhop_cloud.rbac.permissions import Access


@dataclass(frozen=True, slots=True)
class Hotel:
    hotel_id: str
    org_id: str
    name: str
    timezone: str
    created_at: datetime
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class Room:
    room_id: str
    name: str
    floor: int | None = None
    last_seen: datetime | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """A device as the bridge reports it (the write side)."""

    device_id: str
    kind: str
    room_id: str | None = None
    firmware: str | None = None
    online: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    last_seen: datetime | None = None


def is_stale(last_seen: datetime | None, now: datetime, window: timedelta) -> bool:
    return last_seen is None or now - last_seen > window


def _hotel(row: Any) -> Hotel:
    return Hotel(row.id, row.org_id, row.name, row.timezone, row.created_at, row.last_seen)


async def create(
    conn: AsyncConnection, org_id: str, name: str, timezone: str, *, actor_id: str
) -> Hotel:
    hotel = Hotel(new_id("htl"), org_id, name, timezone, utcnow(), None)
    await conn.execute(
        hotels.insert().values(
            id=hotel.hotel_id,
            org_id=org_id,
            name=name,
            timezone=timezone,
            created_at=hotel.created_at,
        )
    )
    await audit.record(
        conn,
        AuditAction.HOTEL_CREATED,
        orgs=[org_id],
        actor_id=actor_id,
        target_type="hotel",
        target_id=hotel.hotel_id,
        detail={"name": name},
    )
    return hotel


async def access(conn: AsyncConnection, user_id: str, hotel_id: str) -> tuple[Hotel, Access]:
    """The hotel and the caller's access, in one query.

    NotFound both when the hotel does not exist and when the caller cannot see
    it, so that other tenants learn nothing about which ids exist.
    """
    rows = (
        await conn.execute(
            sa.select(
                hotels.c.id.label("h_id"),
                hotels.c.org_id.label("h_org_id"),
                hotels.c.name.label("h_name"),
                hotels.c.timezone.label("h_timezone"),
                hotels.c.created_at.label("h_created_at"),
                hotels.c.last_seen.label("h_last_seen"),
                grants,
            )
            .join(
                grants,
                sa.and_(grants.c.org_id == hotels.c.org_id, grants.c.user_id == user_id),
            )
            .where(
                hotels.c.id == hotel_id,
                sa.or_(grants.c.hotel_id.is_(None), grants.c.hotel_id == hotels.c.id),
            )
        )
    ).all()
    if not rows:
        raise NotFound("no such hotel")
    first = rows[0]
    hotel = Hotel(
        first.h_id,
        first.h_org_id,
        first.h_name,
        first.h_timezone,
        first.h_created_at,
        first.h_last_seen,
    )
    found = Access.of(hotel.org_id, [grant_from_row(row) for row in rows], utcnow())
    if not found.sees_hotel(hotel_id):
        raise NotFound("no such hotel")
    return hotel, found


async def in_org(conn: AsyncConnection, org_id: str, found: Access) -> list[Hotel]:
    """The organisation's hotels that `found` can see."""
    rows = (
        await conn.execute(
            sa.select(hotels).where(hotels.c.org_id == org_id).order_by(hotels.c.name, hotels.c.id)
        )
    ).all()
    return [_hotel(row) for row in rows if found.sees_hotel(row.id)]


def _room_filter(column: Any, visible: frozenset[str] | None) -> Any:
    return sa.true() if visible is None else column.in_(sorted(visible))


async def list_rooms(
    conn: AsyncConnection,
    hotel_id: str,
    *,
    visible: frozenset[str] | None,
    after: str | None,
    limit: int,
) -> list[Room]:
    query = sa.select(rooms).where(
        rooms.c.hotel_id == hotel_id, _room_filter(rooms.c.room_id, visible)
    )
    if after is not None:
        query = query.where(rooms.c.room_id > after)
    result = await conn.execute(query.order_by(rooms.c.room_id).limit(limit))
    return [Room(r.room_id, r.name, r.floor, r.last_seen) for r in result]


async def get_room(
    conn: AsyncConnection, hotel_id: str, room_id: str, *, visible: frozenset[str] | None
) -> Room:
    if visible is not None and room_id not in visible:
        raise NotFound("no such room")
    row = (
        await conn.execute(
            sa.select(rooms).where(rooms.c.hotel_id == hotel_id, rooms.c.room_id == room_id)
        )
    ).first()
    if row is None:
        raise NotFound("no such room")
    return Room(row.room_id, row.name, row.floor, row.last_seen)


def _upsert(conn: AsyncConnection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def upsert_rooms(conn: AsyncConnection, hotel_id: str, items: Sequence[Room]) -> None:
    """Insert or replace rooms of a hotel (the bridge's sync path; tests seed with it)."""
    if not items:
        return
    statement = _upsert(conn, rooms)
    statement = statement.on_conflict_do_update(
        index_elements=[rooms.c.hotel_id, rooms.c.room_id],
        set_={
            "name": statement.excluded.name,
            "floor": statement.excluded.floor,
            "last_seen": statement.excluded.last_seen,
        },
    )
    await conn.execute(
        statement,
        [
            {
                "hotel_id": hotel_id,
                "room_id": r.room_id,
                "name": r.name,
                "floor": r.floor,
                "last_seen": r.last_seen,
            }
            for r in items
        ],
    )


async def upsert_devices(conn: AsyncConnection, hotel_id: str, items: Sequence[Device]) -> None:
    """Insert or replace devices of a hotel and move the hotel's `last_seen` forward."""
    if not items:
        return
    statement = _upsert(conn, devices)
    statement = statement.on_conflict_do_update(
        index_elements=[devices.c.hotel_id, devices.c.device_id],
        set_={
            name: statement.excluded[name]
            for name in ("room_id", "kind", "firmware", "online", "state", "last_seen")
        },
    )
    await conn.execute(
        statement,
        [
            {
                "hotel_id": hotel_id,
                "device_id": d.device_id,
                "room_id": d.room_id,
                "kind": d.kind,
                "firmware": d.firmware,
                "online": d.online,
                "state": d.state,
                "last_seen": d.last_seen,
            }
            for d in items
        ],
    )
    seen = [d.last_seen for d in items if d.last_seen is not None]
    if seen:
        newest = max(seen)
        await conn.execute(
            hotels.update()
            .where(
                hotels.c.id == hotel_id,
                sa.or_(hotels.c.last_seen.is_(None), hotels.c.last_seen < newest),
            )
            .values(last_seen=newest)
        )
