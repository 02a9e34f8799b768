"""Access tokens (short-lived EdDSA JWTs) and opaque one-time secrets.

Access token: header `alg=EdDSA`, `typ=at+jwt`, `kid`; claims `iss`, `aud`
(the relay's audience and `EDGE_AUDIENCE`: one token serves the REST API and a
hotel gateway's LAN API), `sub` (user id), `sid` (session: the refresh-token
family, auth/sessions.py), `iat`, `exp`, `jti`, `token_use="access"`, and the
roles a gateway checks offline (`hotel_roles`, `org_roles`, auth/roles.py),
which the relay itself ignores: it checks grants live. A token whose lifetime
(`exp - iat`) is longer than the relay issues, or issued in the future, is
refused, whatever its signature. Nothing but an
access token passes `verify_access`: refresh and enrolment tokens are opaque
random strings (stored only as SHA-256 digests) and never parse as JWTs.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from bellhop_cloud.auth.keys import SigningKey
from bellhop_cloud.auth.roles import TokenRoles
from bellhop_cloud.errors import InvalidToken, TokenExpired

ALGORITHM = "EdDSA"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (RFC 9068 media type)
ACCESS_TOKEN_USE = "access"  # noqa: S105
REFRESH_PREFIX = "bhr_"
ENROLMENT_PREFIX = "bhe_"
# What a gateway's LAN API expects in `aud` (its `api.jwt_audience` default);
# the bridge tells enrolled gateways so (docs/edge-gateway.md).
EDGE_AUDIENCE = "bellhop-edge"
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "sid", "iat", "exp", "jti", "token_use"]
# Relay nodes' clocks may differ by this much; `iat` further ahead is refused.
CLOCK_SKEW_S = 60
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as proven by a verified access token."""

    user_id: str
    session_id: str
    token_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    expires_in: int


def new_secret(prefix: str) -> str:
    """An unguessable opaque token (256 bits) with a prefix naming its kind."""
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the store keeps instead of a secret; a fast hash suffices for 256-bit secrets."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class AccessTokens:
    """Issues and verifies access tokens with one signing key."""

    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl_s: int) -> None:
        self._key = key
        self._public_key = key.public_key
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        # Sent in every bridge's Welcome: made once.
        self.jwks_json = json.dumps(self.jwks(), separators=(",", ":"), sort_keys=True)
        # Verifying a signature costs more than the rest of a read; clients
        # reuse one token for minutes, so remember the ones already verified.
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    @property
    def key(self) -> SigningKey:
        return self._key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._key.jwk()]}

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def audiences(self) -> list[str]:
        """What `aud` holds: the relay's own audience first, then the gateways'."""
        return list(dict.fromkeys([self._audience, EDGE_AUDIENCE]))

    def issue(
        self,
        user_id: str,
        session_id: str,
        *,
        roles: TokenRoles | None = None,
        now: float | None = None,
    ) -> IssuedAccessToken:
        issued_at = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self.audiences,
            "sub": user_id,
            "sid": session_id,
            "iat": issued_at,
            "exp": issued_at + self._ttl_s,
            "jti": secrets.token_urlsafe(12),
            "token_use": ACCESS_TOKEN_USE,
            **(roles or TokenRoles()).claims(),
        }
        token = jwt.encode(
            claims,
            self._key.private_key,
            algorithm=ALGORITHM,
            headers={"kid": self._key.kid, "typ": ACCESS_TOKEN_TYPE},
        )
        return IssuedAccessToken(token=token, expires_in=self._ttl_s)

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """Return the principal of a valid access token or raise InvalidToken/TokenExpired."""
        current = time.time() if now is None else now
        cached = self._verified.get(token)
        if cached is not None:
            if cached.expires_at <= current:
                del self._verified[token]
                raise TokenExpired
            return cached
        principal = self._verify_uncached(token, current)
        self._verified[token] = principal
        if len(self._verified) > _CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    def _verify_uncached(self, token: str, now: float) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("not a JWT") from exc
        # Checked before the signature: alg=none, HS256 with the public key as
        # secret and foreign keys are all turned away here.
        if header.get("alg") != ALGORITHM or header.get("kid") != self._key.kid:
            raise InvalidToken("unknown key or algorithm")
        if header.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidToken("not an access token")
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": _REQUIRED_CLAIMS, "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(_describe(exc)) from exc
        if claims.get("token_use") != ACCESS_TOKEN_USE:
            raise InvalidToken("not an access token")
        expires_at, issued_at = claims["exp"], claims["iat"]
        if not _is_number(expires_at) or not _is_number(issued_at):
            raise InvalidToken("malformed token")
        # Only a token the relay could have issued: nothing longer, nothing from the future.
        if expires_at - issued_at > self._ttl_s or issued_at > now + CLOCK_SKEW_S:
            raise InvalidToken("lifetime longer than this relay issues")
        if expires_at <= now:
            raise TokenExpired
        subject, session = claims["sub"], claims["sid"]
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("bad subject")
        if not isinstance(session, str) or not session:
            raise InvalidToken("bad session")
        return Principal(
            user_id=subject, session_id=session, token_id=str(claims["jti"]), expires_at=expires_at
        )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _describe(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad signature"
    return "malformed token"
