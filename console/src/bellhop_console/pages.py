"""The pages: sign in and out, hotels, a hotel's room grid, a room, its alerts.

Each page is rendered on the server from SDK reads (Jinja2, `templates/`) and
names the path that served it and how fresh its data is. Live changes reach
an open page through `/hotels/{h}/live` (`actions.py`), applied by
`static/console.js`; without script the pages still read and post.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

from bellhop_sdk import (
    AlertState,
    BellhopError,
    Device,
    Hotel,
    Path,
    RateLimited,
    ServerError,
    TelemetryPoint,
    Unauthenticated,
    Unavailable,
    Unreachable,
)
from bellhop_sdk.transport import Transport
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bellhop_console import csrf
from bellhop_console.charts import Chart, chart
from bellhop_console.picture import Picture
from bellhop_console.rooms import metrics_of, tile_of
from bellhop_console.sessions import ConsoleSession
from bellhop_console.web import Console, guarded, served_by

__all__ = ["routes"]

log = logging.getLogger("bellhop_console")
T = TypeVar("T")
MAX_FIELD: Final = 512
# What a visitor who is not signed in is told when signing in fails, per error class (most
# specific first): fixed words, never the error's own text (it may name internal hosts).
SIGN_IN_FAILED: Final[tuple[tuple[type[BellhopError], str], ...]] = (
    (RateLimited, "Too many attempts: wait a moment and try again"),
    (Unreachable, "The {server} cannot be reached now"),
    (Unavailable, "The {server} cannot serve sign-ins now"),
    (ServerError, "The {server} failed"),
)
CODE: Final = re.compile(r"[a-z0-9_]{1,40}")
# Commands offered per device kind: (command, label, [(param, input type, label, extra)]).
CONTROLS: Final[dict[str, list[tuple[str, str, list[tuple[str, str, str, dict[str, Any]]]]]]] = {
    "thermostat": [
        ("set_setpoint", "Set temperature",
         [("setpoint", "number", "Setpoint (°C)", {"min": 5, "max": 35, "step": 0.5})]),
        ("set_mode", "Set mode",
         [("mode", "select", "Mode", {"choices": ("off", "heat", "cool", "auto")})]),
    ],
    "light": [
        ("set_light", "Switch light", [("on", "select", "Light", {"choices": ("true", "false")})]),
    ],
    "door_lock": [("lock", "Lock", []), ("unlock", "Unlock", [])],
}  # fmt: skip


async def _gather_limited(calls: list[Callable[[], Awaitable[T]]], limit: int = 8) -> list[T]:
    gate = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls)))


def _short(value: Any) -> str:
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def routes(console: Console) -> list[Route]:
    """Every page's route."""
    return [*_sign_in_routes(console), *_read_routes(console)]


def _sign_in_routes(console: Console) -> list[Route]:
    async def home(request: Request) -> Response:
        session = await console.store.get(request.cookies.get(console.cookie))
        return RedirectResponse("/hotels" if session else "/login", status_code=303)

    async def login_form(request: Request) -> Response:
        if await console.store.get(request.cookies.get(console.cookie)) is not None:
            return RedirectResponse("/hotels", status_code=303)
        return console.login_page(request)

    async def login(request: Request) -> Response:
        try:
            form = await csrf.checked_form(request, request.cookies.get(csrf.LOGIN_COOKIE))
        except csrf.CsrfRefused:
            return console.login_page(
                request, message="The sign-in form expired: try again.", status=403
            )
        try:
            if form.get("method") == "lan":
                session = await console.store.log_in_lan(_short(form.get("token")).strip())
            else:
                session = await console.store.log_in_cloud(
                    _short(form.get("email")).strip(), _short(form.get("password"))
                )
        except Unauthenticated:
            return console.login_page(
                request, message="Those credentials were not accepted.", status=401
            )
        except BellhopError as exc:
            return console.login_page(request, message=sign_in_failed(exc), status=503)
        response = RedirectResponse("/hotels", status_code=303)
        console.set_session_cookie(response, session)
        response.delete_cookie(csrf.LOGIN_COOKIE, path="/")
        return response

    async def logout(request: Request, session: ConsoleSession) -> Response:
        await csrf.checked_form(request, session.csrf)
        await console.store.end(session)
        response = console.login_page(request, message="You are signed out.")
        console.clear_session_cookie(response)
        return response

    return [
        Route("/", home),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", guarded(console, logout), methods=["POST"]),
    ]


def _read_routes(console: Console) -> list[Route]:
    async def hotels(request: Request, session: ConsoleSession) -> Response:
        client = session.client
        found, via = await _every_hotel(session)

        async def backlog(h: Hotel) -> int | str:
            try:
                if via is not None:
                    value = await via.gateway_backlog(h.hotel_id)
                else:
                    value = await client.call(h.hotel_id, lambda t: t.gateway_backlog(h.hotel_id))
            except BellhopError as exc:
                return f"unknown ({exc.code or 'error'})"
            return "no gateway yet" if value is None else value

        backlogs = await _gather_limited([lambda h=h: backlog(h) for h in found])  # type: ignore[misc]
        rows = list(zip(found, backlogs, strict=True))
        served = served_by([h.freshness for h in found], _path(client.last_path))
        return console.render(
            request, "hotels.html", {"title": "Hotels", "rows": rows, "served": served},
            session=session,
        )  # fmt: skip

    async def hotel(request: Request, session: ConsoleSession) -> Response:
        hotel_id = request.path_params["hotel_id"]
        # Read with this session each time: it says whether this sign-in may see the hotel.
        the_hotel = await session.client.hotel(hotel_id)
        if session.whole_hotel(the_hotel):
            grid = await console.hub.grid(the_hotel, session)  # from memory while live
        else:
            # Room-limited: the relay decides what it sees, so read it, not the shared picture.
            picture = Picture(hotel_id)
            await picture.load(session.client, following_since=None)
            grid = picture.grid(the_hotel)
        context = {"title": the_hotel.name, "hotel": the_hotel, "grid": grid, "served": grid.served}
        return console.render(request, "hotel.html", context, session=session)

    async def room(request: Request, session: ConsoleSession) -> Response:
        hotel_id, room_id = request.path_params["hotel_id"], request.path_params["room_id"]
        client = session.client
        the_hotel = await client.hotel(hotel_id)
        rooms, devices, alerts = await asyncio.gather(
            client.rooms(hotel_id),
            client.devices(hotel_id, room_id=room_id),
            client.alerts(hotel_id, active_only=True, room_id=room_id),
        )
        the_room = next((r for r in rooms if r.room_id == room_id), None)
        if the_room is None:
            return console.error_page(request, session, 404, "No such room.", code="not_found")
        devices.sort(key=lambda d: d.device_id)
        desired = await _gather_limited([lambda d=d: _desired(client, d) for d in devices])  # type: ignore[misc]
        until = datetime.now(UTC)
        charts = await _gather_limited(
            [lambda d=d: _charts(client, d, until) for d in devices]  # type: ignore[misc]
        )
        may = await session.may_command(the_hotel)
        context = {
            "title": f"Room {the_room.name}",
            "hotel": the_hotel,
            "room": the_room,
            "tile": tile_of(the_room, devices, alerts),
            "rows": list(zip(devices, desired, charts, strict=True)),
            "alerts": alerts,
            "controls": CONTROLS if may else {},
            "may_command": may,
            "flash": session.flash,
            "served": served_by([d.freshness for d in devices] or [the_room.freshness], None),
        }
        session.flash = None
        return console.render(request, "room.html", context, session=session)

    async def alerts(request: Request, session: ConsoleSession) -> Response:
        hotel_id = request.path_params["hotel_id"]
        client = session.client
        the_hotel = await client.hotel(hotel_id)
        found = await client.alerts(hotel_id, active_only=request.query_params.get("all") is None)
        found.sort(key=lambda a: a.raised_at, reverse=True)
        context = {
            "title": f"Alerts · {the_hotel.name}",
            "hotel": the_hotel,
            "alerts": found,
            "may_command": await session.may_command(the_hotel),
            "flash": session.flash,
            "served": served_by([a.freshness for a in found], _path(client.last_path)),
            "raised": AlertState.RAISED,
        }
        session.flash = None
        return console.render(request, "alerts.html", context, session=session)

    def page(handler: Callable[[Request, ConsoleSession], Awaitable[Response]]) -> Any:
        return guarded(console, handler)

    return [
        Route("/hotels", page(hotels)),
        Route("/hotels/{hotel_id}", page(hotel)),
        Route("/hotels/{hotel_id}/rooms/{room_id}", page(room)),
        Route("/hotels/{hotel_id}/alerts", page(alerts)),
    ]


async def _every_hotel(session: ConsoleSession) -> tuple[list[Hotel], Transport | None]:
    """Every hotel the sign-in may see, and the transport that listed them.

    The gateway knows only its own hotel, so a cloud sign-in asks the relay first (it
    also knows each gateway's link and backlog); with the cloud away, the LAN answers.
    """
    client = session.client
    if session.kind == "cloud" and Path.CLOUD in client.paths:
        cloud = client.transport(Path.CLOUD)
        try:
            return await cloud.list_hotels(), cloud
        except Unreachable:
            client.report(Path.CLOUD, reachable=False)
    return await client.hotels(), None


def sign_in_failed(exc: BellhopError) -> str:
    """The login page's words for `exc`: fixed per error class, with the server's code if
    it is a plain code; the error's own text goes to the log only."""
    code = exc.code if exc.code and CODE.fullmatch(exc.code) else "error"
    log.warning("signing in failed (%s, %s): %s", type(exc).__name__, code, exc.message)
    server = "gateway" if exc.path is Path.LAN else "relay" if exc.path is Path.CLOUD else "server"
    words = next((w for kind, w in SIGN_IN_FAILED if isinstance(exc, kind)), "Signing in failed")
    return f"{words.format(server=server)} ({code})."


def _path(path: Path | None) -> str | None:
    return None if path is None else path.value


async def _desired(client: Any, device: Device) -> dict[str, Any] | None:
    """The desired state: carried by a LAN read, asked of the cloud otherwise."""
    if device.desired is not None:
        return dict(device.desired.values)
    try:
        return dict((await client.desired(device.hotel_id, device.device_id)).values)
    except BellhopError:
        return None


async def _charts(client: Any, device: Device, until: datetime) -> list[Chart]:
    out = []
    for metric in metrics_of(device):
        try:
            points: list[TelemetryPoint] = await client.telemetry(
                device.hotel_id, device.device_id, metric, since=until - timedelta(hours=24),
                until=until, limit=1000,
            )  # fmt: skip
        except BellhopError:
            points = []
        out.append(chart(metric, points, until))
    return out
