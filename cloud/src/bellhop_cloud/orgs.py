"""Organisations (hotel chains), their members and role grants.

A member is a user with at least one grant in the organisation. Grants are
checked against the database on every request, so a revoked or expired
grant stops working at once, whatever tokens the user holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.db.schema import grants, hotels, organisations, users
from bellhop_cloud.db.store import new_id, utcnow
from bellhop_cloud.errors import (
    Forbidden,
    InvalidRequest,
    LastOwner,
    NotFound,
    RoleNotAllowed,
    UserNotFound,
)
from bellhop_cloud.rbac.permissions import (
    Access,
    Grant,
    Permission,
    Role,
    best_role,
    may_grant,
)


@dataclass(frozen=True, slots=True)
class Organisation:
    org_id: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class GrantView:
    """A grant as admins see it: with the member's email and whether it still holds."""

    grant: Grant
    email: str
    granted_by: str | None
    created_at: datetime
    active: bool


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    email: str
    display_name: str
    best_role: Role | None  # None when every grant has expired


def grant_from_row(row: Any) -> Grant:
    return Grant(
        grant_id=row.id,
        org_id=row.org_id,
        user_id=row.user_id,
        role=Role(row.role),
        hotel_id=row.hotel_id,
        rooms=frozenset(row.rooms) if row.rooms is not None else None,
        expires_at=row.expires_at,
    )


async def create(conn: AsyncConnection, name: str, owner_id: str) -> Organisation:
    """A new organisation whose creator owns it."""
    now = utcnow()
    org = Organisation(new_id("org"), name, now)
    await conn.execute(organisations.insert().values(id=org.org_id, name=name, created_at=now))
    await conn.execute(
        grants.insert().values(
            id=new_id("grt"),
            org_id=org.org_id,
            user_id=owner_id,
            role=Role.OWNER.value,
            granted_by=owner_id,
            created_at=now,
        )
    )
    await audit.record(
        conn,
        AuditAction.ORG_CREATED,
        orgs=[org.org_id],
        actor_id=owner_id,
        target_type="organisation",
        target_id=org.org_id,
        detail={"name": name},
    )
    return org


async def of_user(conn: AsyncConnection, user_id: str) -> list[tuple[Organisation, Access]]:
    """Organisations where the user holds an active grant, with that access."""
    now = utcnow()
    rows = (
        await conn.execute(
            sa.select(grants, organisations.c.name, organisations.c.created_at.label("org_created"))
            .join(organisations, organisations.c.id == grants.c.org_id)
            .where(grants.c.user_id == user_id)
            .order_by(organisations.c.name, organisations.c.id)
        )
    ).all()
    found: dict[str, tuple[Organisation, list[Grant]]] = {}
    for row in rows:
        org, held = found.setdefault(
            row.org_id, (Organisation(row.org_id, row.name, row.org_created), [])
        )
        held.append(grant_from_row(row))
    result = []
    for org, held in found.values():
        access = Access.of(org.org_id, held, now)
        if access.is_member:
            result.append((org, access))
    return result


async def access(conn: AsyncConnection, user_id: str, org_id: str) -> tuple[Organisation, Access]:
    """The organisation and the caller's access; NotFound for non-members."""
    rows = (
        await conn.execute(
            sa.select(grants, organisations.c.name, organisations.c.created_at.label("org_created"))
            .join(organisations, organisations.c.id == grants.c.org_id)
            .where(grants.c.org_id == org_id, grants.c.user_id == user_id)
        )
    ).all()
    found = Access.of(org_id, [grant_from_row(row) for row in rows], utcnow())
    if not found.is_member:
        raise NotFound("no such organisation")
    row = rows[0]
    return Organisation(org_id, row.name, row.org_created), found


def require(found: Access, permission: Permission, *, hotel_id: str | None = None) -> None:
    if not found.can(permission, hotel_id=hotel_id):
        raise Forbidden(f"needs {permission.value}")


async def members(conn: AsyncConnection, org_id: str) -> list[Member]:
    now = utcnow()
    rows = (
        await conn.execute(
            sa.select(grants, users.c.email, users.c.display_name)
            .join(users, users.c.id == grants.c.user_id)
            .where(grants.c.org_id == org_id)
            .order_by(users.c.email)
        )
    ).all()
    by_user: dict[str, tuple[Any, list[Grant]]] = {}
    for row in rows:
        by_user.setdefault(row.user_id, (row, []))[1].append(grant_from_row(row))
    result = []
    for row, held in by_user.values():
        best = best_role(g.role for g in held if g.active(now))
        result.append(Member(row.user_id, row.email, row.display_name, best))
    return result


async def list_grants(conn: AsyncConnection, org_id: str) -> list[GrantView]:
    now = utcnow()
    rows = (
        await conn.execute(
            sa.select(grants, users.c.email)
            .join(users, users.c.id == grants.c.user_id)
            .where(grants.c.org_id == org_id)
            .order_by(grants.c.created_at, grants.c.id)
        )
    ).all()
    return [_view(row, now) for row in rows]


def _view(row: Any, now: datetime) -> GrantView:
    grant = grant_from_row(row)
    return GrantView(grant, row.email, row.granted_by, row.created_at, grant.active(now))


async def add_grant(
    conn: AsyncConnection,
    found: Access,
    *,
    actor_id: str,
    email: str,
    role: Role,
    hotel_id: str | None,
    rooms: frozenset[str] | None,
    expires_at: datetime | None,
) -> GrantView:
    """Give `email` a role; the grantor needs manage_members there and a higher role."""
    now = utcnow()
    if rooms is not None and hotel_id is None:
        raise InvalidRequest("rooms need a hotel_id")
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("expires_at is in the past")
    _check_may_grant(found, role, hotel_id)
    if hotel_id is not None:
        await _hotel_in_org(conn, found.org_id, hotel_id)
    target = (
        await conn.execute(sa.select(users.c.id).where(users.c.email == email.lower()))
    ).first()
    if target is None:
        raise UserNotFound
    grant_id = new_id("grt")
    await conn.execute(
        grants.insert().values(
            id=grant_id,
            org_id=found.org_id,
            user_id=target.id,
            role=role.value,
            hotel_id=hotel_id,
            rooms=sorted(rooms) if rooms is not None else None,
            expires_at=expires_at,
            granted_by=actor_id,
            created_at=now,
        )
    )
    await audit.record(
        conn,
        AuditAction.GRANT_CREATED,
        orgs=[found.org_id],
        actor_id=actor_id,
        target_type="user",
        target_id=target.id,
        detail={
            "grant_id": grant_id,
            "role": role.value,
            "hotel_id": hotel_id,
            "rooms": sorted(rooms) if rooms is not None else None,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    row = (
        await conn.execute(
            sa.select(grants, users.c.email)
            .join(users, users.c.id == grants.c.user_id)
            .where(grants.c.id == grant_id)
        )
    ).one()
    return _view(row, now)


async def revoke_grant(
    conn: AsyncConnection, found: Access, *, actor_id: str, grant_id: str
) -> None:
    row = (
        await conn.execute(
            sa.select(grants).where(grants.c.id == grant_id, grants.c.org_id == found.org_id)
        )
    ).first()
    if row is None:
        raise NotFound("no such grant")
    grant = grant_from_row(row)
    _check_may_grant(found, grant.role, grant.hotel_id)
    if grant.role is Role.OWNER and grant.hotel_id is None:
        await _keep_an_owner(conn, found.org_id, excluding_user=None, excluding_grant=grant_id)
    await conn.execute(grants.delete().where(grants.c.id == grant_id))
    await audit.record(
        conn,
        AuditAction.GRANT_REVOKED,
        orgs=[found.org_id],
        actor_id=actor_id,
        target_type="user",
        target_id=grant.user_id,
        detail={"grant_id": grant_id, "role": grant.role.value, "hotel_id": grant.hotel_id},
    )


async def remove_member(
    conn: AsyncConnection, found: Access, *, actor_id: str, user_id: str
) -> None:
    """Delete every grant of `user_id`; each must be one the actor may revoke."""
    rows = (
        await conn.execute(
            sa.select(grants).where(grants.c.org_id == found.org_id, grants.c.user_id == user_id)
        )
    ).all()
    if not rows:
        raise NotFound("no such member")
    held = [grant_from_row(row) for row in rows]
    for grant in held:
        _check_may_grant(found, grant.role, grant.hotel_id)
    if any(g.role is Role.OWNER and g.hotel_id is None for g in held):
        await _keep_an_owner(conn, found.org_id, excluding_user=user_id, excluding_grant=None)
    await conn.execute(
        grants.delete().where(grants.c.org_id == found.org_id, grants.c.user_id == user_id)
    )
    await audit.record(
        conn,
        AuditAction.MEMBER_REMOVED,
        orgs=[found.org_id],
        actor_id=actor_id,
        target_type="user",
        target_id=user_id,
        detail={"grants": [g.grant_id for g in held]},
    )


def _check_may_grant(found: Access, role: Role, hotel_id: str | None) -> None:
    if not found.can(Permission.MANAGE_MEMBERS, hotel_id=hotel_id):
        raise Forbidden("needs manage_members there")
    ceiling = found.ceiling(hotel_id)
    if ceiling is None or not may_grant(ceiling, role):
        raise RoleNotAllowed(f"you may not grant or revoke {role.value} there")


async def _keep_an_owner(
    conn: AsyncConnection,
    org_id: str,
    *,
    excluding_user: str | None,
    excluding_grant: str | None,
) -> None:
    query = sa.select(grants.c.id).where(
        grants.c.org_id == org_id,
        grants.c.role == Role.OWNER.value,
        grants.c.hotel_id.is_(None),
        sa.or_(grants.c.expires_at.is_(None), grants.c.expires_at > utcnow()),
    )
    if excluding_user is not None:
        query = query.where(grants.c.user_id != excluding_user)
    if excluding_grant is not None:
        query = query.where(grants.c.id != excluding_grant)
    if (await conn.execute(query.limit(1))).first() is None:
        raise LastOwner


async def _hotel_in_org(conn: AsyncConnection, org_id: str, hotel_id: str) -> None:
    found = await conn.execute(
        sa.select(hotels.c.id).where(hotels.c.id == hotel_id, hotels.c.org_id == org_id)
    )
    if found.first() is None:
        raise NotFound("no such hotel in this organisation")
