"""Gateway enrolment and identity.

1. An admin of a hotel creates a one-time enrolment token (returned once,
   stored as a digest, expires).
2. The gateway generates an Ed25519 key pair, signs
   `ENROLMENT_CONTEXT + token` with it and POSTs token, public key and
   signature in the JSON body (never the URL). The relay checks the proof,
   uses the token up and returns the gateway's id.
3. The bridge (a later issue) authenticates a connecting gateway with
   `load_identity` + `GatewayIdentity.verify` on a challenge it chose, and
   re-checks `is_gateway_active` to cut off a revoked gateway.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud.audit import ActorType, AuditAction
from bellhop_cloud.auth.tokens import ENROLMENT_PREFIX, digest, new_secret
from bellhop_cloud.db.schema import enrolment_tokens, gateways
from bellhop_cloud.db.store import Store, new_id, utcnow
from bellhop_cloud.errors import BadSignature, EnrolmentTokenInvalid, NotFound

ENROLMENT_CONTEXT = b"bellhop-enrol-v1\x00"
PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class EnrolmentToken:
    token_id: str
    hotel_id: str
    token: str  # shown once; only its digest is stored
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Gateway:
    gateway_id: str
    org_id: str
    hotel_id: str
    name: str
    public_key: bytes
    enrolled_at: datetime
    revoked_at: datetime | None
    last_seen: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class GatewayIdentity:
    """What the bridge needs to authenticate a gateway."""

    gateway_id: str
    org_id: str
    hotel_id: str
    public_key: bytes
    active: bool

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this gateway's Ed25519 signature of `message`."""
        return verify_signature(self.public_key, message, signature)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _gateway(row: sa.Row[tuple[object, ...]]) -> Gateway:
    m = row._mapping
    return Gateway(
        gateway_id=m["id"],
        org_id=m["org_id"],
        hotel_id=m["hotel_id"],
        name=m["name"],
        public_key=bytes(m["public_key"]),
        enrolled_at=m["enrolled_at"],
        revoked_at=m["revoked_at"],
        last_seen=m["last_seen"],
    )


async def create_token(
    conn: AsyncConnection, *, org_id: str, hotel_id: str, actor_id: str, ttl: timedelta
) -> EnrolmentToken:
    now = utcnow()
    token = EnrolmentToken(new_id("enr"), hotel_id, new_secret(ENROLMENT_PREFIX), now + ttl)
    await conn.execute(
        enrolment_tokens.insert().values(
            id=token.token_id,
            token_hash=digest(token.token),
            org_id=org_id,
            hotel_id=hotel_id,
            created_by=actor_id,
            created_at=now,
            expires_at=token.expires_at,
        )
    )
    await audit.record(
        conn,
        AuditAction.ENROLMENT_TOKEN_CREATED,
        orgs=[org_id],
        actor_id=actor_id,
        target_type="hotel",
        target_id=hotel_id,
        detail={"token_id": token.token_id, "expires_at": token.expires_at.isoformat()},
    )
    return token


async def enrol(
    store: Store,
    *,
    token: str,
    public_key: bytes,
    signature: bytes,
    name: str,
    address: str | None,
) -> Gateway:
    """Exchange a one-time token and a proven public key for a gateway identity."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise BadSignature("public_key must be 32 raw Ed25519 bytes")
    if not verify_signature(public_key, ENROLMENT_CONTEXT + token.encode("utf-8"), signature):
        raise BadSignature("signature does not prove possession of the private key")
    now = utcnow()
    gateway_id = new_id("gw")
    async with store.write() as conn:
        # One conditional UPDATE uses the token up, so two racing gateways
        # cannot both enrol with it.
        used = (
            await conn.execute(
                enrolment_tokens.update()
                .where(
                    enrolment_tokens.c.token_hash == digest(token),
                    enrolment_tokens.c.used_at.is_(None),
                    enrolment_tokens.c.expires_at > now,
                )
                .values(used_at=now, gateway_id=gateway_id)
                .returning(
                    enrolment_tokens.c.id,
                    enrolment_tokens.c.org_id,
                    enrolment_tokens.c.hotel_id,
                    enrolment_tokens.c.created_by,
                )
            )
        ).first()
        if used is None:
            raise EnrolmentTokenInvalid
        await conn.execute(
            gateways.insert().values(
                id=gateway_id,
                org_id=used.org_id,
                hotel_id=used.hotel_id,
                name=name,
                public_key=public_key,
                enrolled_at=now,
                enrolment_token_id=used.id,
            )
        )
        await audit.record(
            conn,
            AuditAction.GATEWAY_ENROLLED,
            orgs=[used.org_id],
            actor_type=ActorType.GATEWAY,
            actor_id=gateway_id,
            target_type="hotel",
            target_id=used.hotel_id,
            address=address,
            detail={"token_id": used.id, "token_created_by": used.created_by, "name": name},
        )
        row = (await conn.execute(sa.select(gateways).where(gateways.c.id == gateway_id))).one()
    return _gateway(row)


async def in_hotel(conn: AsyncConnection, hotel_id: str) -> list[Gateway]:
    rows = await conn.execute(
        sa.select(gateways)
        .where(gateways.c.hotel_id == hotel_id)
        .order_by(gateways.c.enrolled_at, gateways.c.id)
    )
    return [_gateway(row) for row in rows]


async def revoke(
    conn: AsyncConnection, *, hotel_id: str, gateway_id: str, actor_id: str
) -> Gateway:
    """Mark the gateway revoked (idempotent); the bridge refuses it from then on."""
    row = (
        await conn.execute(
            sa.select(gateways).where(gateways.c.id == gateway_id, gateways.c.hotel_id == hotel_id)
        )
    ).first()
    if row is None:
        raise NotFound("no such gateway")
    gateway = _gateway(row)
    if gateway.revoked_at is not None:
        return gateway
    now = utcnow()
    await conn.execute(
        gateways.update()
        .where(gateways.c.id == gateway_id)
        .values(revoked_at=now, revoked_by=actor_id)
    )
    await audit.record(
        conn,
        AuditAction.GATEWAY_REVOKED,
        orgs=[gateway.org_id],
        actor_id=actor_id,
        target_type="gateway",
        target_id=gateway_id,
        detail={"hotel_id": hotel_id},
    )
    row = (await conn.execute(sa.select(gateways).where(gateways.c.id == gateway_id))).one()
    return _gateway(row)


async def load_identity(store: Store, gateway_id: str) -> GatewayIdentity | None:
    """The gateway's identity for the bridge handshake, or None if never enrolled."""
    async with store.read() as conn:
        row = (
            await conn.execute(
                sa.select(
                    gateways.c.id,
                    gateways.c.org_id,
                    gateways.c.hotel_id,
                    gateways.c.public_key,
                    gateways.c.revoked_at,
                ).where(gateways.c.id == gateway_id)
            )
        ).first()
    if row is None:
        return None
    return GatewayIdentity(
        gateway_id=row.id,
        org_id=row.org_id,
        hotel_id=row.hotel_id,
        public_key=bytes(row.public_key),
        active=row.revoked_at is None,
    )


async def is_gateway_active(store: Store, gateway_id: str) -> bool:
    """False for unknown and revoked gateways; the bridge checks it on connect and periodically."""
    identity = await load_identity(store, gateway_id)
    return identity is not None and identity.active


async def revoked_among(store: Store, gateway_ids: Sequence[str]) -> list[str]:
    """Which of these gateways are revoked (or gone): those whose bridges must end."""
    found: set[str] = set()
    revoked: list[str] = []
    async with store.read() as conn:
        for start in range(0, len(gateway_ids), 500):
            chunk = list(gateway_ids[start : start + 500])
            rows = await conn.execute(
                sa.select(gateways.c.id, gateways.c.revoked_at).where(gateways.c.id.in_(chunk))
            )
            for gateway_id, revoked_at in rows:
                found.add(gateway_id)
                if revoked_at is not None:
                    revoked.append(gateway_id)
    return revoked + [g for g in gateway_ids if g not in found]
