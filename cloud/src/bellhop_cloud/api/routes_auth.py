"""Accounts: register, login, refresh, logout, profile, password; and the JWKS."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from bellhop_cloud.accounts import Session, User
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.deps import AddressDep, Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.schemas import (
    LoginRequest,
    PasswordChange,
    ProfileUpdate,
    RefreshRequest,
    RegisterRequest,
    TokenResponse,
    UserOut,
)

router = APIRouter(route_class=BoundaryRoute)
# Short enough that a key published ahead of a rotation reaches edges in time.
JWKS_MAX_AGE_S = 300
PUBLIC = access_rule(Audience.PUBLIC)
ACCOUNT = access_rule(Audience.ACCOUNT)


def _tokens(session: Session) -> TokenResponse:
    return TokenResponse(
        access_token=session.access_token,
        expires_in=session.expires_in,
        refresh_token=session.refresh_token,
        refresh_expires_in=session.refresh_expires_in,
    )


def _user(user: User) -> UserOut:
    return UserOut(
        id=user.user_id,
        email=user.email,
        display_name=user.display_name,
        created_at=user.created_at,
    )


@router.post(
    "/v1/auth/register",
    status_code=201,
    tags=["accounts"],
    responses=responses(409, 422, 429),
    openapi_extra=PUBLIC,
)
async def register(body: RegisterRequest, relay: RelayDep, address: AddressDep) -> UserOut:
    """Create an account. It belongs to no organisation until someone grants it a role."""
    user = await relay.accounts.register(
        str(body.email), body.password, body.display_name, address=address
    )
    return _user(user)


@router.post(
    "/v1/auth/login",
    tags=["accounts"],
    responses=responses(401, 422, 429),
    openapi_extra=PUBLIC,
)
async def login(body: LoginRequest, relay: RelayDep, address: AddressDep) -> TokenResponse:
    """Exchange email and password for an access token and a refresh token."""
    return _tokens(await relay.accounts.login(body.email, body.password, address=address))


@router.post(
    "/v1/auth/refresh",
    tags=["accounts"],
    responses=responses(401, 422),
    openapi_extra=PUBLIC,
)
async def refresh(body: RefreshRequest, relay: RelayDep, address: AddressDep) -> TokenResponse:
    """Use up a refresh token for new tokens. Reusing one ends its whole session."""
    return _tokens(await relay.accounts.refresh(body.refresh_token, address=address))


@router.post(
    "/v1/auth/logout",
    status_code=204,
    tags=["accounts"],
    responses=responses(422),
    openapi_extra=PUBLIC,
)
async def logout(body: RefreshRequest, relay: RelayDep, address: AddressDep) -> Response:
    """End the session of this refresh token (idempotent)."""
    await relay.accounts.logout(body.refresh_token, address=address)
    return Response(status_code=204)


@router.get("/v1/me", tags=["accounts"], responses=responses(401), openapi_extra=ACCOUNT)
async def me(relay: RelayDep, who: CallerDep) -> UserOut:
    return _user(await relay.accounts.profile(who.user_id))


@router.patch("/v1/me", tags=["accounts"], responses=responses(401, 422), openapi_extra=ACCOUNT)
async def update_me(body: ProfileUpdate, relay: RelayDep, who: CallerDep) -> UserOut:
    return _user(await relay.accounts.rename(who.user_id, body.display_name))


@router.post(
    "/v1/me/password",
    tags=["accounts"],
    responses=responses(401, 403, 422, 429),
    openapi_extra=ACCOUNT,
)
async def change_password(
    body: PasswordChange, relay: RelayDep, who: CallerDep, address: AddressDep
) -> TokenResponse:
    """Change the password; every session ends and a new one is returned."""
    session = await relay.accounts.change_password(
        who.user_id, body.current_password, body.new_password, address=address
    )
    return _tokens(session)


@router.get("/.well-known/jwks.json", tags=["keys"], openapi_extra=PUBLIC)
async def jwks(relay: RelayDep, response: Response) -> dict[str, Any]:
    """Public keys that verify access tokens (edges cache them to verify staff offline)."""
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_S}"
    return relay.tokens.jwks()
