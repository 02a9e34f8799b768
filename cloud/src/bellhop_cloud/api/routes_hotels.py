"""A hotel, its rooms and its devices, as last synced from its gateway."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timedelta
from typing import Annotated, NamedTuple

import orjson
from fastapi import APIRouter, Query, Request, Response

from bellhop_cloud import hotels
from bellhop_cloud.api.deps import Audience, CallerDep, RelayDep, access_rule, relay_from
from bellhop_cloud.api.encoding import json_response
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.schemas import DeviceOut, DevicePage, HotelOut, RoomOut, RoomPage
from bellhop_cloud.auth.tokens import Principal
from bellhop_cloud.db.store import utcnow
from bellhop_cloud.errors import InvalidRequest, NotFound
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.rbac.permissions import Permission
from bellhop_cloud.relay import Relay

router = APIRouter(tags=["hotels"])
READ = access_rule(Audience.HOTEL, Permission.READ_STATE)
HOTEL = responses(401, 404, 422)
DEFAULT_LIMIT = 100
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=200, description="next_cursor of a page")]


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
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("cursor is not one this API returned") from exc


class PageQuery(NamedTuple):
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    room_id: str | None = None


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
    body = {"items": orjson.Fragment(page.items), "next_cursor": next_cursor}
    return Response(orjson.dumps(body), media_type="application/json")


# First: routes are matched in order and this is the most frequent read.
@router.get(
    "/v1/hotels/{hotel_id}/devices",
    response_model=DevicePage,
    responses=HOTEL,
    openapi_extra=READ,
)
async def list_devices(
    request: Request,
    hotel_id: str,
    *,
    who: CallerDep,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    room_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Devices you can see, ordered by device id; `room_id` filters to one room."""
    return await device_page(request, hotel_id, who, PageQuery(limit, cursor, room_id))


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
