"""A hotel, its rooms and its devices, as last synced from its gateway."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Annotated, Any, NamedTuple

import orjson
from fastapi import APIRouter, FastAPI, Query, Request, Response

from bellhop_cloud import hotels
from bellhop_cloud.api.boundary import BoundaryRoute, check_path_and_headers, has_control
from bellhop_cloud.api.deps import (
    Audience,
    CallerDep,
    RelayDep,
    access_rule,
    bearer,
    relay_from,
)
from bellhop_cloud.api.encoding import json_response
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.schemas import DeviceOut, DevicePage, HotelOut, RoomOut, RoomPage
from bellhop_cloud.auth.tokens import Principal
from bellhop_cloud.db.store import utcnow
from bellhop_cloud.errors import InvalidRequest, NotFound
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.rbac.permissions import Permission
from bellhop_cloud.relay import Relay

router = APIRouter(tags=["hotels"], route_class=BoundaryRoute)
READ = access_rule(Audience.HOTEL, Permission.READ_STATE)
HOTEL = responses(401, 404, 422)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_CURSOR = 200
MAX_ROOM_ID = 64
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="page size")]
Cursor = Annotated[str | None, Query(max_length=MAX_CURSOR, description="next_cursor of a page")]


def hotel_out(hotel: Hotel, relay: Relay, now: datetime) -> HotelOut:
    window = timedelta(seconds=relay.config.stale_after_s)
    return HotelOut(
        id=hotel.hotel_id,
        org_id=hotel.org_id,
        name=hotel.name,
        timezone=hotel.timezone,
        created_at=hotel.created_at,
        last_seen=hotel.last_seen,
        stale=hotels.is_stale(hotel.last_seen, now, window),
    )


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    """Cursors are opaque to clients so the ordering key can change later."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _bad_cursor() from exc
    # Decoded text crosses the boundary as well as the query does.
    if has_control(after):
        raise _bad_cursor()
    return after


def _bad_cursor() -> InvalidRequest:
    return InvalidRequest(
        "cursor is not one this API returned",
        errors=[{"loc": ["query", "cursor"], "msg": "not a cursor of this API"}],
    )


class PageQuery(NamedTuple):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    room_id: str | None = None


class DevicePageRoute(BoundaryRoute):
    """The device page's route, with a short path for plain query strings.

    FastAPI's dependency solving and parameter validation cost about a
    quarter of this read. A query string of known parameters that needs no
    decoding and holds valid values (nearly every request) is read here;
    anything else, and so every validation error, goes through the declared
    endpoint, whose signature is also what the OpenAPI document shows. The
    short path calls `bearer` itself, so `app.dependency_overrides` does not
    reach it.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()

        async def handler(request: Request) -> Response:
            query = plain_page_query(request.scope["query_string"])
            if query is None:
                return await declared(request)
            check_path_and_headers(request.scope)  # the query is plain: nothing to check
            who = await bearer(request)  # the declared dependency, called as FastAPI would
            return await device_page(request, request.path_params["hotel_id"], who, query)

        return handler


def plain_page_query(query: bytes) -> PageQuery | None:
    """The parameters of a query string that FastAPI would take as it is, else None.

    Plain: visible ASCII without percent or plus escapes, only known parameters, each
    at most once with a non-empty value within its bounds; a limit in digits
    without a leading zero, which pydantic reads the same way.
    """
    if not query:
        return PageQuery()
    if _NOT_PLAIN.search(query):
        return None
    values: dict[bytes, bytes] = {}
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if not value or name in values or name not in _PLAIN_BOUNDS:
            return None
        values[name] = value
    if any(len(value) > _PLAIN_BOUNDS[name] for name, value in values.items()):
        return None
    limit = values.get(b"limit")
    if limit is not None and not (limit.isdigit() and limit[0] != ord("0")):
        return None
    cursor, room_id = values.get(b"cursor"), values.get(b"room_id")
    parsed = PageQuery(
        DEFAULT_LIMIT if limit is None else int(limit),
        None if cursor is None else cursor.decode(),
        None if room_id is None else room_id.decode(),
    )
    return parsed if parsed.limit <= MAX_LIMIT else None


# Anything but visible ASCII without escapes: a control byte, space, percent, plus.
_NOT_PLAIN = re.compile(rb"[^\x21-\x7e]|[%+]")
# The longest plain value of each parameter (for limit, its digits).
_PLAIN_BOUNDS = {b"limit": len(str(MAX_LIMIT)), b"cursor": MAX_CURSOR, b"room_id": MAX_ROOM_ID}


async def device_page(
    request: Request, hotel_id: str, who: Principal, query: PageQuery
) -> Response:
    relay = relay_from(request)  # not a dependency: this is the hottest read
    after = decode_cursor(query.cursor)
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    page = await relay.devices.page(
        hotel_id,
        visible=found.visible_rooms(hotel_id),
        room_id=query.room_id,
        after=after,
        limit=query.limit,
        stale_before=utcnow() - timedelta(seconds=relay.config.stale_after_s),
    )
    next_cursor = None
    if page.last_id is not None and page.count == query.limit:
        next_cursor = encode_cursor(page.last_id)
    # The items are JSON text from the database, spliced in as they are.
    return json_response({"items": orjson.Fragment(page.items), "next_cursor": next_cursor})


async def list_devices(
    request: Request,
    hotel_id: str,
    *,
    who: CallerDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    room_id: Annotated[str | None, Query(max_length=MAX_ROOM_ID)] = None,
) -> Response:
    """Devices you can see, ordered by device id; `room_id` filters to one room."""
    return await device_page(request, hotel_id, who, PageQuery(limit, cursor, room_id))


def add_device_page(app: FastAPI) -> None:
    """Add the device page to the app itself, to be called before any router is included.

    It is the most frequent read: matched first, and directly rather than
    through an included router, which matches every request twice.
    """
    app.router.add_api_route(
        "/v1/hotels/{hotel_id}/devices",
        list_devices,
        methods=["GET"],
        tags=["hotels"],
        response_model=DevicePage,
        responses=HOTEL,
        openapi_extra=READ,
        route_class_override=DevicePageRoute,
    )


@router.get("/v1/hotels/{hotel_id}", responses=HOTEL, openapi_extra=READ)
async def get_hotel(hotel_id: str, relay: RelayDep, who: CallerDep) -> HotelOut:
    hotel, _ = await relay.hotel_access(who.user_id, hotel_id)
    return hotel_out(hotel, relay, utcnow())


@router.get("/v1/hotels/{hotel_id}/rooms", responses=HOTEL, openapi_extra=READ)
async def list_rooms(
    hotel_id: str,
    relay: RelayDep,
    who: CallerDep,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> RoomPage:
    """Rooms you can see, ordered by room id."""
    after = decode_cursor(cursor)
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    async with relay.store.read() as conn:
        rooms = await hotels.list_rooms(
            conn, hotel_id, visible=found.visible_rooms(hotel_id), after=after, limit=limit
        )
    now = utcnow()
    window = timedelta(seconds=relay.config.stale_after_s)
    items = [
        RoomOut(
            room_id=r.room_id,
            name=r.name,
            floor=r.floor,
            last_seen=r.last_seen,
            stale=hotels.is_stale(r.last_seen, now, window),
        )
        for r in rooms
    ]
    next_cursor = encode_cursor(items[-1].room_id) if len(items) == limit else None
    return RoomPage(items=items, next_cursor=next_cursor)


@router.get("/v1/hotels/{hotel_id}/rooms/{room_id}", responses=HOTEL, openapi_extra=READ)
async def get_room(hotel_id: str, room_id: str, relay: RelayDep, who: CallerDep) -> RoomOut:
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    async with relay.store.read() as conn:
        room = await hotels.get_room(conn, hotel_id, room_id, visible=found.visible_rooms(hotel_id))
    window = timedelta(seconds=relay.config.stale_after_s)
    return RoomOut(
        room_id=room.room_id,
        name=room.name,
        floor=room.floor,
        last_seen=room.last_seen,
        stale=hotels.is_stale(room.last_seen, utcnow(), window),
    )


@router.get(
    "/v1/hotels/{hotel_id}/devices/{device_id}",
    response_model=DeviceOut,
    responses=HOTEL,
    openapi_extra=READ,
)
async def get_device(hotel_id: str, device_id: str, relay: RelayDep, who: CallerDep) -> Response:
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    device = await relay.devices.one(
        hotel_id, device_id, stale_before=utcnow() - timedelta(seconds=relay.config.stale_after_s)
    )
    visible = found.visible_rooms(hotel_id)
    if device is None or (visible is not None and device["room_id"] not in visible):
        raise NotFound("no such device")
    return json_response(device)
