"""Alert notifications: a hotel's policy (who is told about what, how, and escalation)
and every attempt to send one (docs/notifications.md)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from bellhop_bridge import notify_channels as channels
from bellhop_bridge.notify_core import Channel, Contact, Policy
from fastapi import APIRouter, Query

from bellhop_cloud import audit, hotels
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.deps import Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.notify_schemas import (
    AttemptOut,
    AttemptPage,
    ChannelOut,
    ContactOut,
    PolicyIn,
    PolicyOut,
)
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.routes_hotels import Cursor, decode_cursor, encode_cursor
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.config import parse_networks
from bellhop_cloud.db.store import new_id
from bellhop_cloud.errors import FieldError, InvalidRequest
from bellhop_cloud.notify import policies
from bellhop_cloud.orgs import require
from bellhop_cloud.rbac.permissions import Permission
from bellhop_cloud.relay import Relay

router = APIRouter(tags=["notifications"], route_class=BoundaryRoute)
# Who is told, and how, is the hotel's managers' business (as its members are).
MANAGE = access_rule(Audience.HOTEL, Permission.MANAGE_MEMBERS)
MAX_LIMIT = 200
_ATTEMPT_ID = re.compile(r"[1-9][0-9]{0,18}", re.ASCII)
MAX_ATTEMPT_ID = 2**63 - 1  # a BIGINT's largest
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]


def _out(hotel_id: str, stored: policies.Stored) -> PolicyOut:
    return PolicyOut(
        hotel_id=hotel_id,
        version=stored.version,
        updated_at=stored.updated_at,
        contacts=[
            ContactOut(
                id=c.contact_id,
                name=c.name,
                kinds=sorted(c.kinds),
                severities=sorted(c.severities),
                escalate_after_s=c.escalate_after_s,
                channels=[
                    ChannelOut(
                        id=ch.channel_id,
                        scheme=channels.scheme_of(ch.url),
                        url=channels.masked(ch.url),
                    )
                    for ch in c.channels
                ],
            )
            for c in stored.policy.contacts
        ],
    )


def reach(relay: Relay) -> channels.Reach:
    """Where the relay's channels may send: public addresses, and the private networks
    its `notify_private_targets` lists."""
    return channels.Reach(parse_networks(relay.config.notify_private_targets))


def _merged(body: PolicyIn, before: Policy, reach: channels.Reach) -> Policy:
    """The new policy: ids kept or made, a channel given by id alone keeps its stored
    URL, every new URL checked with Apprise. InvalidRequest names each bad field."""
    stored = {ch.channel_id: ch.url for c in before.contacts for ch in c.channels}
    errors: list[FieldError] = []
    seen: set[str] = set()
    contacts: list[Contact] = []
    for i, contact in enumerate(body.contacts):
        where: list[str | int] = ["body", "contacts", str(i)]  # as the schema's errors
        contact_id = contact.id or new_id("ct")
        if contact_id in seen:
            errors.append({"loc": [*where, "id"], "msg": "listed more than once"})
        seen.add(contact_id)
        kept: list[Channel] = []
        for j, channel in enumerate(contact.channels):
            at: list[str | int] = [*where, "channels", str(j)]
            channel_id = channel.id or new_id("ch")
            if channel_id in seen:
                errors.append({"loc": [*at, "id"], "msg": "listed more than once"})
            seen.add(channel_id)
            url = channel.url or stored.get(channel_id)
            if url is None:
                errors.append({"loc": [*at, "id"], "msg": "no such channel; give its url"})
                continue
            if (
                channel.url is not None
                and (why := channels.check_url(channel.url, reach)) is not None
            ):
                errors.append({"loc": [*at, "url"], "msg": why})  # never the URL itself
                continue
            kept.append(Channel(channel_id, url))
        contacts.append(
            Contact(
                contact_id,
                contact.name,
                frozenset(contact.kinds),
                frozenset(contact.severities),
                contact.escalate_after_s,
                tuple(kept),
            )
        )
    if errors:
        raise InvalidRequest("the notification policy is not valid", errors=errors)
    return Policy(tuple(contacts))


@router.get(
    "/v1/hotels/{hotel_id}/notifications",
    responses=responses(401, 403, 404, 422),
    openapi_extra=MANAGE,
)
async def get_notifications(hotel_id: str, relay: RelayDep, who: CallerDep) -> PolicyOut:
    """The hotel's notification policy; channel URLs are masked, never shown whole."""
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    require(found, Permission.MANAGE_MEMBERS, hotel_id=hotel_id)
    async with relay.store.read() as conn:
        stored = await policies.read(conn, hotel_id)
    return _out(hotel_id, stored)


@router.put(
    "/v1/hotels/{hotel_id}/notifications",
    responses=responses(401, 403, 404, 422),
    openapi_extra=MANAGE,
)
async def put_notifications(
    hotel_id: str, body: PolicyIn, relay: RelayDep, who: CallerDep
) -> PolicyOut:
    """Replace the policy. A channel sent with its `id` and no `url` keeps its stored
    URL, so a client never needs the secrets it cannot read. Rows already queued keep
    their schedule; a channel removed here is not sent to again."""
    async with relay.store.write() as conn:
        hotel, found = await hotels.access(conn, who.user_id, hotel_id)
        require(found, Permission.MANAGE_MEMBERS, hotel_id=hotel_id)
        before = await policies.read(conn, hotel_id, lock=True)
        policy = _merged(body, before.policy, reach(relay))
        stored = await policies.write(conn, hotel_id, policy, before, who.user_id)
        detail: dict[str, Any] = {
            "hotel_id": hotel_id,
            "version": stored.version,
            "contacts": [
                {
                    "id": c.contact_id,
                    "channels": [channels.scheme_of(ch.url) for ch in c.channels],
                }
                for c in policy.contacts
            ],
        }
        await audit.record(
            conn,
            AuditAction.NOTIFICATIONS_SET,
            orgs=[hotel.org_id],
            actor_id=who.user_id,
            target_type="hotel",
            target_id=hotel_id,
            detail=detail,
        )
    return _out(hotel_id, stored)


def _attempt_cursor(after: str | None) -> int | None:
    """The attempt id a cursor holds: ASCII digits of a positive 64-bit id, nothing else
    (`str.isdigit` also takes "²", and a tampered cursor may hold a number no column
    holds: either would reach `int()` or the database and fail as a 500)."""
    if after is None:
        return None
    if _ATTEMPT_ID.fullmatch(after) is None or int(after) > MAX_ATTEMPT_ID:
        raise InvalidRequest(
            "cursor is not one this API returned",
            errors=[{"loc": ["query", "cursor"], "msg": "not a cursor of this list"}],
        )
    return int(after)


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@router.get(
    "/v1/hotels/{hotel_id}/notifications/attempts",
    responses=responses(401, 403, 404, 422),
    openapi_extra=MANAGE,
)
async def list_attempts(
    hotel_id: str, relay: RelayDep, who: CallerDep, limit: Limit = 50, cursor: Cursor = None
) -> AttemptPage:
    """Every attempt to send a notification, newest first."""
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    require(found, Permission.MANAGE_MEMBERS, hotel_id=hotel_id)
    before = _attempt_cursor(decode_cursor(cursor))
    async with relay.store.read() as conn:
        rows = await policies.attempts(conn, hotel_id, limit=limit + 1, before=before)
    items = [
        AttemptOut(
            id=r.id,
            notification_id=r.notification_id,
            alert_id=r.alert_id,
            transition=r.transition,
            contact_id=r.contact_id,
            channel_id=r.channel_id,
            number=r.number,
            outcome=r.outcome,
            error=r.error,
            started_at=datetime.fromtimestamp(r.started_ms / 1000, UTC),
            finished_at=_at(r.finished_ms),
            state=r.state,
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return AttemptPage(items=items, next_cursor=encode_cursor(str(items[-1].id)) if more else None)
