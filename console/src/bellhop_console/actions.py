"""What a page does: send a command, acknowledge an alert, follow the hotel live.

Every POST checks the session's CSRF token, then the role: a role that may not
send commands (or acknowledge alerts) gets the 403 page without the SDK being
asked. With script, forms post through `fetch` and get JSON; without, they
redirect back to the page, which shows the result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

from bellhop_sdk import AckResult, CommandRejected, CommandTimedOut, Value
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bellhop_console import csrf
from bellhop_console.sessions import ConsoleSession
from bellhop_console.urls import url_path
from bellhop_console.web import Console, guarded

__all__ = ["parse_value", "routes"]

log = logging.getLogger("bellhop_console")
PARAM_PREFIX: Final = "p."
MAX_PARAMS: Final = 16
COMMAND_TIMEOUT_S: Final = 10.0
SSE_PING_S: Final = 15
ACK_WORDS: Final = {
    AckResult.ACKNOWLEDGED: "Acknowledged.",
    AckResult.QUEUED: "Acknowledged; the gateway is away and records it when it connects.",
    AckResult.ALREADY_ACKNOWLEDGED: "Someone acknowledged it already.",
    AckResult.ALREADY_CLEARED: "It had cleared already.",
}


def parse_value(text: str) -> Value:
    """A form value as a command parameter: JSON when it parses to a scalar, else text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, bool | int | float | str) or value is None else text


def _done(request: Request, back: str, ok: bool, message: str, **extra: Any) -> Response:
    if request.headers.get("x-requested-with") == "fetch":
        return JSONResponse({"ok": ok, "message": message, **extra})
    return RedirectResponse(back, status_code=303)


def routes(console: Console) -> list[Route]:
    async def allowed(session: ConsoleSession, hotel_id: str) -> bool:
        return await session.may_command(await session.client.hotel(hotel_id))

    def refused(request: Request, session: ConsoleSession) -> Response:
        return console.error_page(
            request, session, 403,
            "Your role does not allow sending commands or acknowledging alerts.",
            code="forbidden",
        )  # fmt: skip

    async def command(request: Request, session: ConsoleSession) -> Response:
        form = await csrf.checked_form(request, session.csrf)
        hotel_id, device_id = request.path_params["hotel_id"], request.path_params["device_id"]
        if not await allowed(session, hotel_id):
            return refused(request, session)
        name = str(form.get("name") or "")
        params = {
            key[len(PARAM_PREFIX) :]: parse_value(str(value))
            for key, value in list(form.multi_items())[: MAX_PARAMS * 2]
            if key.startswith(PARAM_PREFIX) and isinstance(value, str)
        }
        room = str(form.get("room_id") or "")
        back = url_path("hotels", hotel_id, "rooms", room) if room else url_path("hotels", hotel_id)
        try:
            result = await session.client.send_command(
                hotel_id, device_id, name, params, timeout_s=COMMAND_TIMEOUT_S
            )
        except (CommandRejected, CommandTimedOut) as exc:
            message = f"{name} on {device_id}: {exc.message} ({exc.code})."
            session.flash = message
            return _done(request, back, False, message, code=exc.code)
        via = "LAN" if result.freshness.path.value == "lan" else "cloud"
        shown = json.dumps(dict(result.result or {}), sort_keys=True)
        message = f"{name} on {device_id}: {result.status.value} via {via}, result {shown}."
        session.flash = message
        return _done(
            request, back, True, message, status=result.status.value,
            path=result.freshness.path.value, command_id=result.command_id,
        )  # fmt: skip

    async def acknowledge(request: Request, session: ConsoleSession) -> Response:
        form = await csrf.checked_form(request, session.csrf)
        hotel_id, alert_id = request.path_params["hotel_id"], request.path_params["alert_id"]
        if not await allowed(session, hotel_id):
            return refused(request, session)
        note = str(form.get("note") or "").strip()[:500] or None
        outcome = await session.client.acknowledge_alert(hotel_id, alert_id, note=note)
        message = ACK_WORDS.get(outcome.outcome, str(outcome.outcome))
        session.flash = f"{alert_id}: {message}"
        return _done(
            request, url_path("hotels", hotel_id, "alerts"), True, message,
            outcome=outcome.outcome.value, path=outcome.freshness.path.value,
        )  # fmt: skip

    async def live(request: Request, session: ConsoleSession) -> Response:
        hotel_id = request.path_params["hotel_id"]
        # May this session see it (raises if not)? Room-limited: a private feed (live.py).
        the_hotel = await session.client.hotel(hotel_id)
        sub = console.hub.subscribe(the_hotel, session)

        async def stream() -> AsyncIterator[dict[str, str]]:
            try:
                while True:
                    message = await sub.queue.get()
                    if message is None:
                        return
                    yield {"event": "update", "data": json.dumps(message, separators=(",", ":"))}
            finally:
                console.hub.unsubscribe(sub)

        return EventSourceResponse(
            stream(), ping=SSE_PING_S, headers={"cache-control": "no-store"}, send_timeout=10
        )

    def page(handler: Any) -> Any:
        return guarded(console, handler)

    return [
        Route("/hotels/{hotel_id}/devices/{device_id}/command", page(command), methods=["POST"]),
        Route("/hotels/{hotel_id}/alerts/{alert_id}/ack", page(acknowledge), methods=["POST"]),
        Route("/hotels/{hotel_id}/live", page(live)),
    ]
