"""What every page shares: the console's state, rendering, the session guard, errors.

Errors from the SDK become a page saying what happened in words, with the
server's code; an unexpected one becomes a page with a reference to the log.
A traceback never reaches the browser.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from bellhop_sdk import (
    BellhopError,
    CommandRejected,
    CommandTimedOut,
    Conflict,
    Forbidden,
    GatewayOffline,
    InvalidRequest,
    NotFound,
    RateLimited,
    Unauthenticated,
    Unavailable,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from bellhop_console import csrf
from bellhop_console.config import ConsoleConfig
from bellhop_console.live import LiveHub
from bellhop_console.served import Served, served_by
from bellhop_console.sessions import ConsoleSession, SessionStore, cookie_name
from bellhop_console.urls import segment

__all__ = ["Console", "Served", "guarded", "served_by"]

log = logging.getLogger("bellhop_console")
HERE: Final = Path(__file__).parent

Handler = Callable[[Request, ConsoleSession], Awaitable[Response]]

# (HTTP status, what to tell a person) per SDK error class, most specific first.
FRIENDLY: Final[tuple[tuple[type[BellhopError], int, str], ...]] = (
    (Forbidden, 403, "Your role does not allow this."),
    (NotFound, 404, "That was not found, or it is not visible to you."),
    (InvalidRequest, 400, "The server refused the request as it was filled in."),
    (Conflict, 409, "That conflicts with a change made meanwhile."),
    (GatewayOffline, 503, "The hotel's gateway is not connected to the cloud right now."),
    (CommandTimedOut, 504, "The device did not answer in time; it may still act."),
    (CommandRejected, 502, "The device refused the command."),
    (RateLimited, 429, "Too many requests: wait a moment and try again."),
    (Unavailable, 503, "Neither the gateway nor the cloud can serve this right now."),
)


class Console:
    """The running console: configuration, sessions, live feeds, templates."""

    def __init__(self, config: ConsoleConfig) -> None:
        self.config = config
        self.store = SessionStore(config)
        self.hub = LiveHub(config.client_queue)
        self.store.on_end.append(self.hub.session_ended)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True
        )
        self.templates = Jinja2Templates(env=env)
        self.templates.env.filters["ago"] = _ago
        self.templates.env.filters["clock"] = _clock
        self.templates.env.filters["segment"] = segment
        self.cookie = cookie_name(config)

    def render(
        self,
        request: Request,
        name: str,
        context: dict[str, Any],
        *,
        session: ConsoleSession | None = None,
        status: int = 200,
    ) -> Response:
        context = {
            "session": session,
            "csrf_token": session.csrf if session is not None else None,
            "served": None,
            **context,
        }
        response: Response = self.templates.TemplateResponse(
            request, name, context, status_code=status
        )
        response.headers["cache-control"] = "no-store"
        return response

    def error_page(
        self, request: Request, session: ConsoleSession | None, status: int, title: str, **kw: Any
    ) -> Response:
        if _wants_json(request):
            return JSONResponse({"ok": False, "message": title, **kw}, status_code=status)
        context = {"title": title, "status": status, **kw}
        return self.render(request, "error.html", context, session=session, status=status)

    def sdk_error(
        self, request: Request, session: ConsoleSession | None, exc: BellhopError
    ) -> Response:
        status, title = 502, "The server could not do this."
        for cls, code, text in FRIENDLY:
            if isinstance(exc, cls):
                status, title = code, text
                break
        path = None if exc.path is None else ("LAN" if exc.path.value == "lan" else "cloud")
        return self.error_page(
            request, session, status, title, detail=exc.message, code=exc.code, path=path
        )

    def login_again(self, request: Request, why: str) -> Response:
        if _wants_json(request):
            return JSONResponse({"ok": False, "message": why, "code": "session_ended"}, 401)
        return self.login_page(request, message=why, status=401)

    def login_page(
        self, request: Request, *, message: str | None = None, status: int = 200
    ) -> Response:
        token = csrf.new_token()
        context = {
            "title": "Sign in",
            "message": message,
            "login_csrf": token,
            "cloud": self.config.cloud_url is not None,
            "lan": self.config.lan_target is not None,
        }
        response = self.render(request, "login.html", context, status=status)
        response.set_cookie(
            csrf.LOGIN_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies,
            path="/",
        )
        return response

    def set_session_cookie(self, response: Response, session: ConsoleSession) -> None:
        response.set_cookie(
            self.cookie,
            session.sid,
            max_age=int(self.config.session_ttl_s),
            httponly=True,
            samesite="strict",
            secure=self.config.secure_cookies,
            path="/",
        )

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie, path="/", httponly=True, samesite="strict",
            secure=self.config.secure_cookies,
        )  # fmt: skip

    def unexpected(self, request: Request, exc: Exception) -> Response:
        reference = secrets.token_hex(4)
        log.error("unexpected error (reference %s)", reference, exc_info=exc)
        return self.error_page(
            request, None, 500, "Something went wrong in the console.",
            detail=f"The console's log has the details under reference {reference}.",
            code="internal",
        )  # fmt: skip


def _wants_json(request: Request) -> bool:
    return request.headers.get("x-requested-with") == "fetch"


def guarded(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """`handler` with the request's live session, or the login page without one; SDK
    errors as friendly pages, a refused session (its refresh failed) ended."""

    async def endpoint(request: Request) -> Response:
        session = await console.store.get(request.cookies.get(console.cookie))
        if session is None:
            if request.method == "GET" and not _wants_json(request):
                return RedirectResponse("/login", status_code=303)
            return console.login_again(request, "Your session has ended: sign in again.")
        try:
            return await handler(request, session)
        except csrf.CsrfRefused as exc:
            return console.error_page(request, session, 403, str(exc), code="csrf")
        except Unauthenticated as exc:
            await console.store.end(session)
            response = console.login_again(
                request, f"Your session has ended: sign in again ({exc.code or 'unauthenticated'})."
            )
            console.clear_session_cookie(response)
            return response
        except BellhopError as exc:
            return console.sdk_error(request, session, exc)

    return endpoint


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def _clock(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%H:%M:%S UTC")
