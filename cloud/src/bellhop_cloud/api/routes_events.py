"""Live events: a Server-Sent Events stream per hotel and per organisation.

A request that accepts `text/event-stream` gets the stream (docs/live-events.md);
any other gets the events the log still holds as one JSON page, for clients
that poll. Both resume after the `Last-Event-ID` header, never an id in the URL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from bellhop_cloud import orgs
from bellhop_cloud.api.boundary import BoundaryRoute, has_control, refuse
from bellhop_cloud.api.deps import Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.problems import responses
from bellhop_cloud.auth.tokens import Principal
from bellhop_cloud.errors import AuthError, Forbidden, NotFound, RateLimited, StoreUnavailable
from bellhop_cloud.live.events import ID_MAX_LENGTH, Entry, EventId, format_id, parse_id
from bellhop_cloud.live.stream import EventStream, Watch
from bellhop_cloud.rbac.permissions import Access, Permission
from bellhop_cloud.relay import Relay

router = APIRouter(tags=["events"], route_class=BoundaryRoute)
STREAM: Final = "text/event-stream"
PAGE_MAX: Final = 1000
ANSWERS: Final = {
    **responses(401, 403, 404, 422, 429),
    200: {
        "description": f"With `Accept: {STREAM}`, the stream; otherwise one JSON page",
        "content": {STREAM: {"schema": {"type": "string"}}},
    },
}


class EventOut(BaseModel):
    id: str = Field(description="send the last one seen as Last-Event-ID to resume")
    kind: str = Field(description="state, alert, command, desired, device or gateway")
    hotel_id: str
    room_id: str | None
    at: datetime = Field(description="when the relay published it")
    data: dict[str, Any]


class EventsPage(BaseModel):
    items: list[EventOut] = Field(description="oldest first")
    gap: bool = Field(description="events after Last-Event-ID may be gone from the log")
    last_event_id: str | None = Field(description="the Last-Event-ID to send next")


# Read by hand (`_after`): as FastAPI's optional header it would be a nullable schema,
# which a header cannot be. An id this relay did not issue (any other text) is older
# than anything kept: the stream starts with a `gap`. Ids stay out of URLs.
LAST_EVENT_ID: Final = {
    "parameters": [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "description": "resume after this event: the id of the last one received",
            "schema": {"type": "string", "maxLength": ID_MAX_LENGTH},
        }
    ]
}
UNKNOWN_ID: Final = (0, 0)  # before every id a log issues
Limit = Annotated[int, Query(ge=1, le=PAGE_MAX, description="most events in a JSON page")]


def _reads(found: Access, hotel_id: str) -> bool:
    """READ_STATE on the hotel, or on some of its rooms (a room-limited grant)."""
    if found.can(Permission.READ_STATE, hotel_id=hotel_id):
        return True
    rooms = found.visible_rooms(hotel_id) or frozenset()
    return any(found.can(Permission.READ_STATE, hotel_id=hotel_id, room_id=r) for r in rooms)


def _shows(rooms: frozenset[str] | None, entry: Entry) -> bool:
    """Room-limited readers see their rooms' events, and every gateway's connectivity."""
    if rooms is None or entry.kind == "gateway":
        return True
    return entry.room_id is not None and entry.room_id in rooms


async def _session_ended(relay: Relay, who: Principal) -> bool:
    try:
        await relay.sessions.require_live(who, fresh=False)
    except AuthError:
        return True
    return False


class _HotelView:
    def __init__(self, relay: Relay, who: Principal, hotel_id: str, found: Access) -> None:
        self.relay, self.who, self.hotel_id = relay, who, hotel_id
        self.rooms = found.visible_rooms(hotel_id)
        self.key = (who.session_id, who.user_id, "hotel", hotel_id)

    def visible(self, entry: Entry) -> bool:
        return entry.hotel_id == self.hotel_id and _shows(self.rooms, entry)

    async def fetch(self) -> str | Access:
        """The caller's access to the hotel now, or why the streams of this view end."""
        if await _session_ended(self.relay, self.who):
            return "session_ended"
        try:
            _, found = await self.relay.hotel_access(self.who.user_id, self.hotel_id)
        except NotFound:
            return "access_revoked"
        return found

    def apply(self, found: str | Access) -> str | None:
        if isinstance(found, str):
            return found
        if not _reads(found, self.hotel_id):
            return "access_revoked"
        self.rooms = found.visible_rooms(self.hotel_id)
        return None


class _OrgView:
    def __init__(self, relay: Relay, who: Principal, org_id: str, found: Access) -> None:
        self.relay, self.who, self.org_id = relay, who, org_id
        self.key = (who.session_id, who.user_id, "org", org_id)
        self._use(found)

    def _use(self, found: Access) -> None:
        self.found = found
        self._rooms: dict[str, frozenset[str] | None] = {}

    def visible(self, entry: Entry) -> bool:
        hotel_id = entry.hotel_id
        if hotel_id not in self._rooms:
            if not (self.found.sees_hotel(hotel_id) and _reads(self.found, hotel_id)):
                return False
            self._rooms[hotel_id] = self.found.visible_rooms(hotel_id)
        return _shows(self._rooms[hotel_id], entry)

    async def fetch(self) -> str | Access:
        """The caller's access to the organisation now, or why its streams end."""
        if await _session_ended(self.relay, self.who):
            return "session_ended"
        try:
            async with self.relay.store.read() as conn:
                _, found = await orgs.access(conn, self.who.user_id, self.org_id)
        except NotFound:
            return "access_revoked"
        return found

    def apply(self, found: str | Access) -> str | None:
        if isinstance(found, str):
            return found
        self._use(found)
        return None


def _wants_stream(request: Request) -> bool:
    for part in request.headers.get("accept", "").split(","):
        media, _, params = part.partition(";")
        refused = params.replace(" ", "").lower() in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
        if media.strip().lower() == STREAM and not refused:
            return True
    return False


def _after(request: Request) -> EventId | None:
    """The `Last-Event-ID` header, when sent."""
    text = request.headers.get("last-event-id")
    if text is None:
        return None
    if len(text) > ID_MAX_LENGTH or has_control(text):
        raise refuse(["header", "Last-Event-ID"], f"at most {ID_MAX_LENGTH} plain characters")
    return parse_id(text) or UNKNOWN_ID


def _item(entry: Entry) -> EventOut:
    body = orjson.loads(entry.payload)
    return EventOut(
        id=entry.id,
        kind=entry.kind,
        hotel_id=entry.hotel_id,
        room_id=entry.room_id,
        at=body["at"],
        data=body["data"],
    )


async def _answer(
    request: Request,
    view: _HotelView | _OrgView,
    *,
    org_id: str,
    hotel_id: str | None,
    after: EventId | None,
    limit: int,
) -> Response | EventsPage:
    relay, who = view.relay, view.who
    if _wants_stream(request):
        watch = Watch(
            expires_at=who.expires_at,
            key=view.key,
            fetch=view.fetch,
            apply=view.apply,
            visible=view.visible,
        )
        session_id = who.session_id
        if not relay.live.claim_stream(session_id):
            limit_open = relay.config.events_streams_per_session
            raise RateLimited(
                relay.config.events_recheck_s,
                f"this session holds {limit_open} event streams on this node: close one first",
            )
        try:
            return EventStream(
                relay.live,
                org_id,
                hotel_id,
                after,
                watch,
                heartbeat=relay.config.events_heartbeat_s,
                on_close=lambda: relay.live.release_stream(session_id),
            )
        except BaseException:
            relay.live.release_stream(session_id)
            raise
    try:
        if after is None:
            held = await relay.live.recent(org_id, relay.config.events_replay)
            shown = [e for e in held if view.visible(e)][-limit:]
            newest = held[-1].id if held else None
            return EventsPage(items=[_item(e) for e in shown], gap=False, last_event_id=newest)
        resumed = await relay.live.resume(org_id, after)
    except (TimeoutError, OSError, RedisError) as exc:
        raise StoreUnavailable("the live event log is unavailable") from exc
    items: list[EventOut] = []
    last = after
    for entry in resumed.entries:
        if len(items) == limit:
            break
        last = entry.key
        if view.visible(entry):
            items.append(_item(entry))
    return EventsPage(items=items, gap=resumed.gap, last_event_id=format_id(last))


@router.get(
    "/v1/hotels/{hotel_id}/events",
    response_model=EventsPage,
    responses=ANSWERS,
    openapi_extra={**access_rule(Audience.HOTEL, Permission.READ_STATE), **LAST_EVENT_ID},
)
async def hotel_events(
    hotel_id: str,
    request: Request,
    *,
    relay: RelayDep,
    who: CallerDep,
    limit: Limit = 100,
) -> Response | EventsPage:
    """What changes in the hotel as it happens: state, alerts, commands, desired state,
    devices and gateway connectivity, as far as your grants reach (docs/live-events.md)."""
    after = _after(request)
    hotel, found = await relay.hotel_access(who.user_id, hotel_id)
    if not _reads(found, hotel_id):
        raise Forbidden(f"needs {Permission.READ_STATE.value}")
    view = _HotelView(relay, who, hotel_id, found)
    return await _answer(
        request, view, org_id=hotel.org_id, hotel_id=hotel_id, after=after, limit=limit
    )


@router.get(
    "/v1/orgs/{org_id}/events",
    response_model=EventsPage,
    responses=ANSWERS,
    openapi_extra={**access_rule(Audience.ORGANISATION, Permission.READ_STATE), **LAST_EVENT_ID},
)
async def org_events(
    org_id: str,
    request: Request,
    *,
    relay: RelayDep,
    who: CallerDep,
    limit: Limit = 100,
) -> Response | EventsPage:
    """The events of every hotel of the organisation you can see, each as far as your
    grants on it reach."""
    after = _after(request)
    async with relay.store.read() as conn:
        _, found = await orgs.access(conn, who.user_id, org_id)
    hotel_ids = {g.hotel_id for g in found.grants if g.hotel_id is not None}
    if not found.can(Permission.READ_STATE) and not any(_reads(found, h) for h in hotel_ids):
        raise Forbidden(f"needs {Permission.READ_STATE.value}")
    view = _OrgView(relay, who, org_id, found)
    return await _answer(request, view, org_id=org_id, hotel_id=None, after=after, limit=limit)
