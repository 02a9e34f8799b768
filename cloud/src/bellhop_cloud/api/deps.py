"""Request dependencies: the relay, the caller, their address, and route access rules.

Every route declares who may call it with `access_rule(...)`, published in the
OpenAPI document as `x-bellhop-access`; the tenant-isolation tests read it to
know what each caller must get.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, cast

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from bellhop_cloud.auth.tokens import Principal
from bellhop_cloud.errors import AuthError, Unauthenticated
from bellhop_cloud.rbac.permissions import Permission
from bellhop_cloud.relay import Relay

_READS = frozenset({"GET", "HEAD"})


class BearerAuth(HTTPBearer):
    """The `Authorization: Bearer` scheme, resolved straight to the verified caller.

    The token must verify and its session must be live (auth/sessions.py).

    One dependency instead of a scheme plus a verifier: FastAPI's per-
    dependency cost is a visible share of a hot read.
    """

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        relay = relay_from(request)
        credentials = await super().__call__(request)
        if credentials is None:
            relay.metrics.auth_failures.labels(reason="unauthenticated").inc()
            raise Unauthenticated("send an access token as 'Authorization: Bearer ...'")
        try:
            principal = relay.tokens.verify(credentials.credentials)
            # Reads may trust a verified session for session_cache_s; writes ask the store.
            fresh = request.method not in _READS
            await relay.sessions.require_live(principal, fresh=fresh)
        except AuthError as exc:
            relay.metrics.auth_failures.labels(reason=exc.code).inc()
            raise
        return principal


bearer = BearerAuth(
    auto_error=False, scheme_name="bearer", description="Access token from /v1/auth/login"
)


class Audience(StrEnum):
    PUBLIC = "public"  # no token
    ACCOUNT = "account"  # any signed-in user, about themselves
    ORGANISATION = "organisation"  # a permission in the organisation of {org_id}
    HOTEL = "hotel"  # a permission on the hotel {hotel_id}


def access_rule(audience: Audience, permission: Permission | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {"audience": audience.value}
    if permission is not None:
        rule["permission"] = permission.value
    return {"x-bellhop-access": rule}


def relay_from(request: Request) -> Relay:
    return cast("Relay", request.app.state.relay)


async def relay_of(request: Request) -> Relay:
    return relay_from(request)


async def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


RelayDep = Annotated[Relay, Depends(relay_of)]
CallerDep = Annotated[Principal, Depends(bearer)]
AddressDep = Annotated[str | None, Depends(client_address)]
