"""Organisations, members, grants, the organisation's hotels and its audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from bellhop_cloud import audit, hotels, orgs
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.deps import Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.routes_hotels import hotel_out
from bellhop_cloud.api.schemas import (
    AuditEntryOut,
    AuditPage,
    GrantCreate,
    GrantOut,
    HotelCreate,
    HotelOut,
    MemberOut,
    OrgCreate,
    OrgOut,
)
from bellhop_cloud.db.store import utcnow
from bellhop_cloud.orgs import GrantView, Organisation
from bellhop_cloud.rbac.permissions import Access, Permission

router = APIRouter(tags=["organisations"], route_class=BoundaryRoute)
ORG = responses(401, 403, 404, 422)
# Audit ids are 64-bit integers in the store; a larger `before` is no id at all.
MAX_AUDIT_ID = 2**63 - 1


def _org(org: Organisation, found: Access) -> OrgOut:
    return OrgOut(id=org.org_id, name=org.name, created_at=org.created_at, role=found.org_role())


def _grant(view: GrantView) -> GrantOut:
    g = view.grant
    return GrantOut(
        id=g.grant_id,
        user_id=g.user_id,
        email=view.email,
        role=g.role,
        hotel_id=g.hotel_id,
        rooms=sorted(g.rooms) if g.rooms is not None else None,
        expires_at=g.expires_at,
        active=view.active,
        granted_by=view.granted_by,
        created_at=view.created_at,
    )


@router.get("/v1/orgs", responses=responses(401), openapi_extra=access_rule(Audience.ACCOUNT))
async def list_orgs(relay: RelayDep, who: CallerDep) -> list[OrgOut]:
    """Organisations where you hold an active role."""
    async with relay.store.read() as conn:
        return [_org(org, found) for org, found in await orgs.of_user(conn, who.user_id)]


@router.post(
    "/v1/orgs",
    status_code=201,
    responses=responses(401, 422),
    openapi_extra=access_rule(Audience.ACCOUNT),
)
async def create_org(body: OrgCreate, relay: RelayDep, who: CallerDep) -> OrgOut:
    """Create an organisation; you become its owner."""
    async with relay.store.write() as conn:
        org = await orgs.create(conn, body.name, who.user_id)
        _, found = await orgs.access(conn, who.user_id, org.org_id)
    return _org(org, found)


@router.get(
    "/v1/orgs/{org_id}",
    responses=ORG,
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.READ_STATE),
)
async def get_org(org_id: str, relay: RelayDep, who: CallerDep) -> OrgOut:
    async with relay.store.read() as conn:
        org, found = await orgs.access(conn, who.user_id, org_id)
    return _org(org, found)


@router.get(
    "/v1/orgs/{org_id}/members",
    responses=ORG,
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.MANAGE_MEMBERS),
)
async def list_members(org_id: str, relay: RelayDep, who: CallerDep) -> list[MemberOut]:
    async with relay.store.read() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        orgs.require(found, Permission.MANAGE_MEMBERS)
        found_members = await orgs.members(conn, org_id)
    return [
        MemberOut(user_id=m.user_id, email=m.email, display_name=m.display_name, role=m.best_role)
        for m in found_members
    ]


@router.delete(
    "/v1/orgs/{org_id}/members/{user_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 422),
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.MANAGE_MEMBERS),
)
async def remove_member(org_id: str, user_id: str, relay: RelayDep, who: CallerDep) -> Response:
    """Remove every grant the user holds in the organisation."""
    async with relay.store.write() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        orgs.require(found, Permission.MANAGE_MEMBERS)
        await orgs.remove_member(conn, found, actor_id=who.user_id, user_id=user_id)
    relay.access_cache.clear()
    return Response(status_code=204)


@router.get(
    "/v1/orgs/{org_id}/grants",
    responses=ORG,
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.MANAGE_MEMBERS),
)
async def list_grants(org_id: str, relay: RelayDep, who: CallerDep) -> list[GrantOut]:
    async with relay.store.read() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        if found.can(Permission.MANAGE_MEMBERS):
            views = await orgs.list_grants(conn, org_id)
        else:
            # Hotel managers see the grants of the hotels they manage.
            managed = {
                g.hotel_id
                for g in found.grants
                if g.hotel_id and found.can(Permission.MANAGE_MEMBERS, hotel_id=g.hotel_id)
            }
            if not managed:
                orgs.require(found, Permission.MANAGE_MEMBERS)
            views = [v for v in await orgs.list_grants(conn, org_id) if v.grant.hotel_id in managed]
    return [_grant(v) for v in views]


@router.post(
    "/v1/orgs/{org_id}/grants",
    status_code=201,
    responses=responses(401, 403, 404, 422),
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.MANAGE_MEMBERS),
)
async def create_grant(org_id: str, body: GrantCreate, relay: RelayDep, who: CallerDep) -> GrantOut:
    """Give a registered user a role: organisation-wide, on one hotel, or on some rooms.

    Set `expires_at` for a time-limited grant (a contractor for a week). You may
    grant only roles below your own there, unless you are an owner.
    """
    async with relay.store.write() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        view = await orgs.add_grant(
            conn,
            found,
            actor_id=who.user_id,
            email=str(body.email),
            role=body.role,
            hotel_id=body.hotel_id,
            rooms=frozenset(body.rooms) if body.rooms is not None else None,
            expires_at=body.expires_at,
        )
    relay.access_cache.clear()
    return _grant(view)


@router.delete(
    "/v1/orgs/{org_id}/grants/{grant_id}",
    status_code=204,
    responses=responses(401, 403, 404, 409, 422),
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.MANAGE_MEMBERS),
)
async def revoke_grant(org_id: str, grant_id: str, relay: RelayDep, who: CallerDep) -> Response:
    async with relay.store.write() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        await orgs.revoke_grant(conn, found, actor_id=who.user_id, grant_id=grant_id)
    relay.access_cache.clear()
    return Response(status_code=204)


@router.get(
    "/v1/orgs/{org_id}/hotels",
    responses=ORG,
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.READ_STATE),
)
async def list_hotels(org_id: str, relay: RelayDep, who: CallerDep) -> list[HotelOut]:
    """The organisation's hotels that you can see."""
    async with relay.store.read() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        found_hotels = await hotels.in_org(conn, org_id, found)
    now = utcnow()
    return [hotel_out(h, relay, now) for h in found_hotels]


@router.post(
    "/v1/orgs/{org_id}/hotels",
    status_code=201,
    responses=ORG,
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.MANAGE_HOTELS),
)
async def create_hotel(org_id: str, body: HotelCreate, relay: RelayDep, who: CallerDep) -> HotelOut:
    async with relay.store.write() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        orgs.require(found, Permission.MANAGE_HOTELS)
        hotel = await hotels.create(conn, org_id, body.name, body.timezone, actor_id=who.user_id)
    return hotel_out(hotel, relay, utcnow())


@router.get(
    "/v1/orgs/{org_id}/audit",
    responses=ORG,
    openapi_extra=access_rule(Audience.ORGANISATION, Permission.READ_AUDIT),
)
async def read_audit(
    org_id: str,
    relay: RelayDep,
    who: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_AUDIT_ID, description="entries older than this id")
    ] = None,
) -> AuditPage:
    """Who did what in the organisation, newest first."""
    async with relay.store.read() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
        orgs.require(found, Permission.READ_AUDIT)
        found_entries = await audit.entries(conn, org_id, limit=limit, before=before)
    items = [
        AuditEntryOut(
            id=e.entry_id,
            at=e.at,
            actor_type=e.actor_type,
            actor_id=e.actor_id,
            action=e.action,
            target_type=e.target_type,
            target_id=e.target_id,
            address=e.address,
            detail=e.detail,
        )
        for e in found_entries
    ]
    next_before = items[-1].id if len(items) == limit else None
    return AuditPage(items=items, next_before=next_before)
