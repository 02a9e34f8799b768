"""Gateway enrolment tokens, enrolment itself, listing and revocation."""

from __future__ import annotations

import binascii
from datetime import datetime, timedelta

from fastapi import APIRouter, Request

from bellhop_cloud import enrolment, hotels
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.deps import AddressDep, Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.schemas import (
    EnrolledOut,
    EnrolmentTokenCreate,
    EnrolmentTokenOut,
    EnrolRequest,
    GatewayOut,
)
from bellhop_cloud.auth.keys import b64url, b64url_decode
from bellhop_cloud.bridge.endpoint import BRIDGE_PATH
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.store import utcnow
from bellhop_cloud.enrolment import Gateway
from bellhop_cloud.errors import BadSignature
from bellhop_cloud.orgs import require
from bellhop_cloud.rbac.permissions import Permission

router = APIRouter(tags=["gateways"], route_class=BoundaryRoute)
ENROL = access_rule(Audience.HOTEL, Permission.ENROL_GATEWAYS)


def _gateway_out(gateway: Gateway, now: datetime, window: timedelta) -> GatewayOut:
    return GatewayOut(
        id=gateway.gateway_id,
        org_id=gateway.org_id,
        hotel_id=gateway.hotel_id,
        name=gateway.name,
        public_key=b64url(gateway.public_key),
        enrolled_at=gateway.enrolled_at,
        revoked_at=gateway.revoked_at,
        active=gateway.active,
        last_seen=gateway.last_seen,
        stale=hotels.is_stale(gateway.last_seen, now, window),
    )


@router.post(
    "/v1/hotels/{hotel_id}/enrolment-tokens",
    status_code=201,
    responses=responses(401, 403, 404, 422),
    openapi_extra=ENROL,
)
async def create_enrolment_token(
    hotel_id: str, body: EnrolmentTokenCreate, relay: RelayDep, who: CallerDep
) -> EnrolmentTokenOut:
    """A one-time token that lets one gateway enrol for this hotel; shown only here."""
    ttl = timedelta(seconds=body.ttl_seconds or relay.config.enrolment_token_ttl_s)
    async with relay.store.write() as conn:
        hotel, found = await hotels.access(conn, who.user_id, hotel_id)
        require(found, Permission.ENROL_GATEWAYS, hotel_id=hotel_id)
        token = await enrolment.create_token(
            conn, org_id=hotel.org_id, hotel_id=hotel_id, actor_id=who.user_id, ttl=ttl
        )
    return EnrolmentTokenOut(
        id=token.token_id, hotel_id=hotel_id, token=token.token, expires_at=token.expires_at
    )


@router.post(
    "/v1/gateways/enrol",
    status_code=201,
    responses=responses(401, 422),
    openapi_extra=access_rule(Audience.PUBLIC),
)
async def enrol(
    body: EnrolRequest, request: Request, relay: RelayDep, address: AddressDep
) -> EnrolledOut:
    """Exchange an enrolment token and a public key (with proof of its private key) for an id.

    `signature` is the Ed25519 signature of the bytes `bellhop-enrol-v1`, a zero
    byte, then the token, made with the gateway's new private key.
    """
    try:
        public_key = b64url_decode(body.public_key)
        signature = b64url_decode(body.signature)
    except (binascii.Error, ValueError) as exc:
        raise BadSignature("public_key and signature must be base64url") from exc
    gateway = await enrolment.enrol(
        relay.store,
        token=body.token,
        public_key=public_key,
        signature=signature,
        name=body.name,
        address=address,
    )
    relay.metrics.gateways_enrolled.inc()
    out = _gateway_out(gateway, utcnow(), timedelta(seconds=relay.config.stale_after_s))
    return EnrolledOut(**out.model_dump(), bridge_url=bridge_url(relay.config, request))


def bridge_url(config: RelayConfig, request: Request) -> str:
    """The bridge URL gateways are told: configured, or this host on the bridge port."""
    if config.bridge_public_url is not None:
        return config.bridge_public_url
    scheme = "wss" if request.url.scheme == "https" else "ws"
    host = request.url.hostname or config.host
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{config.bridge_port}{BRIDGE_PATH}"


@router.get(
    "/v1/hotels/{hotel_id}/gateways",
    responses=responses(401, 404, 422),
    openapi_extra=access_rule(Audience.HOTEL, Permission.READ_STATE),
)
async def list_gateways(hotel_id: str, relay: RelayDep, who: CallerDep) -> list[GatewayOut]:
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    require(found, Permission.READ_STATE, hotel_id=hotel_id)
    async with relay.store.read() as conn:
        found_gateways = await enrolment.in_hotel(conn, hotel_id)
    now = utcnow()
    window = timedelta(seconds=relay.config.stale_after_s)
    return [_gateway_out(g, now, window) for g in found_gateways]


@router.post(
    "/v1/hotels/{hotel_id}/gateways/{gateway_id}/revoke",
    responses=responses(401, 403, 404, 422),
    openapi_extra=ENROL,
)
async def revoke_gateway(
    hotel_id: str, gateway_id: str, relay: RelayDep, who: CallerDep
) -> GatewayOut:
    """Cut the gateway off: the bridge refuses it from now on (idempotent)."""
    async with relay.store.write() as conn:
        _, found = await hotels.access(conn, who.user_id, hotel_id)
        require(found, Permission.ENROL_GATEWAYS, hotel_id=hotel_id)
        gateway = await enrolment.revoke(
            conn, hotel_id=hotel_id, gateway_id=gateway_id, actor_id=who.user_id
        )
    return _gateway_out(gateway, utcnow(), timedelta(seconds=relay.config.stale_after_s))
