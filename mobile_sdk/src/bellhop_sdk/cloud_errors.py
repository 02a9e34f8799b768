"""The relay's answers as the SDK's errors: problem documents (RFC 9457) by their status
and `code`, and a relay that cannot be reached as `Unreachable`, the signal to try the LAN."""

from __future__ import annotations

from typing import Final

import httpx

from bellhop_sdk.errors import (
    BellhopError,
    CommandTimedOut,
    Conflict,
    Forbidden,
    GatewayOffline,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    Unreachable,
)
from bellhop_sdk.models import Path

__all__ = ["problem_error", "unreachable_error"]

_STATUS_ERRORS: Final[dict[int, type[BellhopError]]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: InvalidRequest,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
    429: RateLimited,
    500: ServerError,
    503: Unavailable,
    504: CommandTimedOut,
}
_CODE_ERRORS: Final[dict[str, type[BellhopError]]] = {
    "gateway_offline": GatewayOffline,
    "command_timed_out": CommandTimedOut,
}


def problem_error(response: httpx.Response) -> BellhopError:
    """The SDK error for an answer of status >= 400, from its problem document."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "code" not in body:
        # Not the relay's answer: a proxy or load balancer in front of a relay that is away.
        if response.status_code in (502, 503, 504):
            return Unreachable(
                f"HTTP {response.status_code} without a problem document",
                code=f"http_{response.status_code}",
                path=Path.CLOUD,
                status=response.status_code,
            )
        body = {"code": f"http_{response.status_code}", "detail": response.text[:200]}
    code, detail = str(body["code"]), str(body.get("detail") or body.get("title") or "")
    kind = _CODE_ERRORS.get(code) or _STATUS_ERRORS.get(response.status_code, BellhopError)
    if kind is RateLimited:
        retry = response.headers.get("retry-after")
        retry_s = float(retry) if retry and retry.isdigit() else None
        return RateLimited(
            detail, code=code, path=Path.CLOUD, status=response.status_code, retry_after_s=retry_s
        )
    return kind(detail, code=code, path=Path.CLOUD, status=response.status_code)


def unreachable_error(exc: httpx.TransportError) -> Unreachable:
    code = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return Unreachable(f"{type(exc).__name__}: {exc}", code=code, path=Path.CLOUD)
