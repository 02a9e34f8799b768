"""The console's Starlette application: pages, actions, static files, security headers.

    app = create_app(ConsoleConfig(cloud_url="https://relay.example", lan_target="10.0.0.5:7443"))

The lifespan owns the session sweeper and the live feeds: both stop, and every
session's SDK client is closed, when the server shuts down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bellhop_console import actions, pages
from bellhop_console.config import ConsoleConfig
from bellhop_console.web import HERE, Console

__all__ = ["create_app"]

log = logging.getLogger("bellhop_console")

# No inline script or style, no other origin, no framing: what the pages need and no more.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.setdefault("content-security-policy", CSP)
        response.headers.setdefault("x-content-type-options", "nosniff")
        response.headers.setdefault("referrer-policy", "same-origin")
        response.headers.setdefault("x-frame-options", "DENY")
        return response


def create_app(config: ConsoleConfig) -> Starlette:
    """The console for `config` (validated here)."""
    console = Console(config.validate())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.store.start()
        try:
            yield
        finally:
            await console.hub.aclose()
            await console.store.aclose()
            log.info("console stopped: every session closed")

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def unexpected(request: Request, exc: Exception) -> Response:
        return console.unexpected(request, exc)

    async def not_found(request: Request, exc: Exception) -> Response:
        return console.error_page(request, None, 404, "There is no such page.", code="not_found")

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            *pages.routes(console),
            *actions.routes(console),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={Exception: unexpected, 404: not_found},
        lifespan=lifespan,
    )
    app.state.console = console
    return app
