"""One interceptor for the LAN API: who is calling, and what an error means.

Every LanService call is authenticated here (bearer token, verified on the
gateway itself, so it works with the internet down) and every `EdgeError` a
handler raises becomes one gRPC status code from `STATUS_CODES`; nothing
else decides status codes. The standard health and reflection services pass
through without a token, so monitoring and tooling work as usual.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc
from bellhop.lan.v1 import lan_pb2

from bellhop_edge.auth import Authenticator, Principal, Role
from bellhop_edge.errors import (
    AuthError,
    Conflict,
    DeadlineExceeded,
    EdgeError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unavailable,
)

__all__ = ["SERVICE", "STATUS_CODES", "GatewayInterceptor", "principal", "status_for"]

log = logging.getLogger(__name__)

SERVICE: Final = lan_pb2.DESCRIPTOR.services_by_name["LanService"].full_name
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")

# First match wins: an error on two branches takes the earlier code.
STATUS_CODES: Final[list[tuple[type[EdgeError], grpc.StatusCode]]] = [
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ABORTED),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_for(exc: EdgeError) -> grpc.StatusCode:
    for kind, code in STATUS_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def _unexpected(method: str) -> str:
    """Log a bug with its traceback and a reference; the client gets only the reference.

    Called from an `except` block. A Python exception's text can carry
    internals (paths, values), so it never reaches a client.
    """
    reference = secrets.token_hex(4)
    log.exception("unexpected error in %s (ref %s)", method, reference)
    return f"internal error (ref {reference}); the gateway's log has the details"


def principal() -> Principal:
    """Who is calling: set by the interceptor for the call being served."""
    return _principal.get()


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates LanService calls and maps EdgeError to status codes."""

    def __init__(self, authenticator: Authenticator, *, allow_anonymous: bool = False) -> None:
        self._auth = authenticator
        self._allow_anonymous = allow_anonymous

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(f"/{SERVICE}/"):
            return handler
        metadata = dict(details.invocation_metadata or ())
        raw = metadata.get("authorization")
        authorization = raw.decode() if isinstance(raw, bytes) else raw

        def principal_or_abort() -> Principal:
            if authorization is None and self._allow_anonymous:
                return Principal("loopback", Role.ADMIN, "anonymous")
            return self._auth.authenticate(authorization)

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                try:
                    _principal.set(principal_or_abort())
                    return await inner(request, context)
                except EdgeError as exc:
                    await context.abort(status_for(exc), str(exc))
                except Exception:
                    await context.abort(grpc.StatusCode.INTERNAL, _unexpected(details.method))

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    _principal.set(principal_or_abort())
                    async for item in inner_stream(request, context):
                        yield item
                except EdgeError as exc:
                    await context.abort(status_for(exc), str(exc))
                except Exception:
                    await context.abort(grpc.StatusCode.INTERNAL, _unexpected(details.method))

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
