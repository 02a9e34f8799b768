"""Every error leaves as RFC 9457 problem details with a stable `code`."""

from __future__ import annotations

import logging
import math
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bellhop_cloud.api.schemas import Problem
from bellhop_cloud.errors import AuthError, InvalidRequest, RateLimited, RelayError
from bellhop_cloud.relay import Relay

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


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
        log.error("request failed: %s", exc.detail)
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=headers,
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
    return problem_response(
        request,
        status=exc.status_code,
        code=code,
        title=detail,
        detail=detail,
        headers=dict(exc.headers) if exc.headers else None,
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        status=RelayError.status,
        code=RelayError.code,
        title=RelayError.title,
        detail="the relay failed to answer; the error is logged",
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RelayError, _relay_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses a route can answer."""
    return {status: {"model": Problem, "description": _DESCRIPTIONS[status]} for status in statuses}


_DESCRIPTIONS = {
    400: "Bad request",
    401: "Missing, invalid or expired credentials",
    403: "Signed in, but the role does not allow this",
    404: "Not found (or not visible to the caller)",
    409: "Conflict with the current state",
    422: "The body or parameters do not match the schema",
    429: "Too many attempts; see Retry-After",
    503: "A dependency is unavailable",
}
