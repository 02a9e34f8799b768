"""Every error leaves as RFC 9457 problem details with a stable `code`.

Expected errors (`RelayError`, validation, routing) are answered by exception
handlers. Anything else is answered by `UnexpectedErrors` as a 500 with a
reference, logged once by its class and that reference: never its message,
which for a database error holds the statement's parameters (what users
typed), and never handed on to the server, which would log it again.
"""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bellhop_cloud.api.contract import (
    DESCRIPTIONS,
    MEDIA_TYPE,
    REQUEST_ID_HEADER,
    allowed_methods,
)
from bellhop_cloud.api.schemas import Problem
from bellhop_cloud.errors import (
    AuthError,
    InvalidRequest,
    RateLimited,
    RelayError,
)
from bellhop_cloud.relay import Relay

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    relay = cast("Relay | None", getattr(request.app.state, "relay", None))
    if relay is not None:
        relay.metrics.problems.labels(code=code).inc()
    body = Problem(
        type=f"urn:bellhop:problem:{code}",
        title=title,
        status=status,
        code=code,
        detail=detail,
        instance=request.url.path,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status, headers=headers, media_type=MEDIA_TYPE
    )


async def _relay_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RelayError)
    headers: dict[str, str] = {}
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = f'Bearer error="{exc.code}"'
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if exc.status >= 500:
        # Our own details name a dependency and an error class, never request data.
        log.error("%s %s failed: %s", request.method, _route(request.scope), exc.detail)
    errors = exc.errors if isinstance(exc, InvalidRequest) else None
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=headers,
        errors=cast("list[dict[str, Any]] | None", errors),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Location and message only: echoing the input could reflect secrets.
    errors = [
        {"loc": [str(part) for part in err.get("loc", ())], "msg": err.get("msg", "")}
        for err in exc.errors()
    ]
    return problem_response(
        request,
        status=InvalidRequest.status,
        code=InvalidRequest.code,
        title=InvalidRequest.title,
        detail="the request does not match the API schema",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    detail = exc.detail if isinstance(exc.detail, str) else code
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405:
        # The router names the methods of the first route that matched the path;
        # a path can have several routes (GET and PATCH /v1/me), so ask the document.
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=detail,
        detail=detail,
        headers=headers,
    )


class UnexpectedErrors:
    """Answers an exception no handler took as `500 internal_error`, logged once.

    Sits inside the app's own error middleware, which would answer too but
    then re-raise to the server, and the server logs the whole exception,
    message and all, a second time.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def noting_start(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, noting_start)
        except Exception as exc:
            reference = "req_" + secrets.token_hex(8)
            # Not log.exception: the messages in a traceback may hold request data.
            log.error(
                "request %s failed: %s %s raised %s at %s",
                reference,
                scope["method"],
                _route(scope),
                _classes(exc),
                _where(exc),
            )
            if started:
                return  # too late for a problem document; the client sees a cut answer
            request = Request(scope, receive)
            response = problem_response(
                request,
                status=RelayError.status,
                code=RelayError.code,
                title=RelayError.title,
                detail=f"the relay failed to answer; reference {reference}",
                headers={REQUEST_ID_HEADER: reference},
            )
            await response(scope, receive, send)


def _route(scope: Scope) -> str:
    """The route's template: a raw path may carry what the client typed."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else "(unmatched)"


def _classes(exc: BaseException) -> str:
    """`IntegrityError <- ForeignKeyViolationError`: the chain of causes, classes only."""
    names: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(names) < 5:
        names.append(f"{type(seen).__module__}.{type(seen).__qualname__}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(names)


def _where(exc: BaseException) -> str:
    """The innermost frame of the relay's own code: file, line and function."""
    where = "?"
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if "bellhop_cloud" in code.co_filename:
            where = (
                f"{code.co_filename.rsplit('bellhop_cloud/', 1)[-1]}:{tb.tb_lineno} {code.co_name}"
            )
        tb = tb.tb_next
    return where


def install(app: FastAPI) -> None:
    """Exception handlers for expected errors; add `UnexpectedErrors` as a middleware too."""
    app.add_exception_handler(RelayError, _relay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses a route can answer."""
    return {status: {"model": Problem, "description": DESCRIPTIONS[status]} for status in statuses}
