"""Who is calling the LAN API: bearer tokens verified on the gateway itself.

Two verifiers, tried in order, both working with the internet down:
- `LocalTokens`: tokens minted on the gateway (`bellhop edge token create`),
  kept only as SHA-256 hashes in a file, for staff devices and break-glass.
- `JwksVerifier`: access tokens issued by the cloud relay, verified against a
  cached copy of the relay's JWKS (asymmetric keys), with issuer, audience,
  expiry and token type checked. The copy is `api.jwks_file` when set, else
  the one the relay sends over the bridge (bridge/trust.py), so an enrolled
  gateway accepts the relay's tokens without configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

import jwt

from bellhop_edge.bridge import trust
from bellhop_edge.bridge.identity import Identity
from bellhop_edge.config import EdgeConfig
from bellhop_edge.errors import AuthError, PermissionDenied
from bellhop_edge.files import write_atomic

log = logging.getLogger(__name__)

TOKEN_PREFIX = "bht_"  # noqa: S105 - a marker, not a secret


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    VIEWER = 1
    STAFF = 2
    MANAGER = 3
    ADMIN = 4
    OWNER = 5

    @classmethod
    def parse(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise AuthError(f"unknown role {name!r}") from None


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    role: Role
    source: str

    def require(self, role: Role, action: str) -> None:
        if self.role < role:
            raise PermissionDenied(f"{action} needs the {role.name.lower()} role")


class Verifier(Protocol):
    def verify(self, token: str) -> Principal | None:
        """The principal, None if this verifier does not know the token kind."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class LocalTokens:
    """Gateway-minted tokens, stored hashed in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, str]] = {}
        self._mtime: int | None = None
        self._reload()

    def _reload(self) -> None:
        """Re-read the file when it changed: tokens minted or revoked by the CLI
        while the gateway runs take effect at once."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._entries, self._mtime = {}, None
            return
        if mtime != self._mtime:
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise AuthError(f"staff tokens file {self.path} is unreadable: {exc}") from None
            self._mtime = mtime

    def create(self, name: str, role: Role) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self._entries[_digest(token)] = {"name": name, "role": role.name.lower()}
        write_atomic(self.path, json.dumps(self._entries, indent=2))
        return token

    def revoke(self, name: str) -> int:
        before = len(self._entries)
        self._entries = {k: v for k, v in self._entries.items() if v["name"] != name}
        write_atomic(self.path, json.dumps(self._entries, indent=2))
        return before - len(self._entries)

    def verify(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX):
            return None
        self._reload()
        digest = _digest(token)
        for known, entry in self._entries.items():
            if hmac.compare_digest(known, digest):
                return Principal(entry["name"], Role.parse(entry["role"]), "local")
        raise AuthError("unknown or revoked token")


class JwksVerifier:
    """Cloud-issued access tokens checked against a cached JWKS.

    The role on this gateway is the higher of the token's `hotel_roles[hotel_id]`
    and `org_roles[org_id]` (the hotel's organisation, when known); the subject is
    the token's `sub`, the cloud account's id.
    """

    ALGORITHMS: Sequence[str] = ("EdDSA", "ES256")

    def __init__(
        self,
        jwks: Mapping[str, Any],
        *,
        audience: str,
        issuer: str | None,
        hotel_id: str,
        org_id: str | None = None,
    ) -> None:
        self._keys = self._parse(jwks)
        self._audience = audience
        self._issuer = issuer
        self._hotel_id = hotel_id
        self._org_id = org_id
        self._path: Path | None = None
        self._mtime: int | None = None
        # From the bridge's cache: issuer, audience and organisation come with the keys.
        self._bridged = False
        self._missing = ""  # why there are no keys yet (bridged only)

    @staticmethod
    def _parse(jwks: Mapping[str, Any]) -> dict[str, jwt.PyJWK]:
        return {
            key["kid"]: jwt.PyJWK.from_dict(dict(key))
            for key in jwks.get("keys", [])
            if "kid" in key
        }

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> JwksVerifier:
        """Keys from a cached JWKS file, re-read when it changes (key rotation)."""
        verifier = cls(json.loads(path.read_text()), **kwargs)
        verifier._path, verifier._mtime = path, path.stat().st_mtime_ns
        return verifier

    @classmethod
    def from_bridge(cls, path: Path, *, hotel_id: str, missing: str) -> JwksVerifier:
        """What the relay last sent over the bridge (bridge/trust.py), re-read when it
        changes; until there is a copy, cloud tokens are refused with `missing`."""
        verifier = cls({}, audience="", issuer=None, hotel_id=hotel_id)
        verifier._path, verifier._bridged, verifier._missing = path, True, missing
        verifier._reload()
        return verifier

    def _reload(self) -> None:
        if self._path is None:
            return
        try:
            mtime = self._path.stat().st_mtime_ns
            if mtime != self._mtime:
                doc = json.loads(self._path.read_text())
                keys = self._parse(doc)
                if self._bridged:
                    self._issuer = str(doc["issuer"])
                    self._audience = str(doc["audience"])
                    self._org_id = str(doc.get("org_id") or "") or None
                self._keys = keys
                self._mtime = mtime
        except FileNotFoundError:
            if not self._bridged:
                log.warning("cached JWKS %s is gone, keeping the previous keys", self._path)
        except (OSError, ValueError, KeyError, TypeError, jwt.PyJWTError) as exc:
            # Keep the keys we had: a half-written cache must not lock staff out.
            log.warning("cached JWKS %s unreadable, keeping the previous keys: %s", self._path, exc)

    def verify(self, token: str) -> Principal | None:
        if token.count(".") != 2:
            return None
        self._reload()
        if self._bridged and self._mtime is None:
            raise AuthError(self._missing)
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(str(header.get("kid")))
            if key is None:
                raise AuthError("invalid token: signed by a key this gateway does not know")
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(self.ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {_describe(exc, self._audience)}") from None
        if claims.get("token_use", claims.get("typ")) != "access":
            raise AuthError("not an access token")
        role = self._role(claims)
        return Principal(str(claims["sub"]), role, "cloud")

    def _role(self, claims: Mapping[str, Any]) -> Role:
        """The higher of the hotel's and its organisation's entries; PermissionDenied if none."""
        found: list[Role] = []
        for claim, key in (("hotel_roles", self._hotel_id), ("org_roles", self._org_id)):
            roles = claims.get(claim)
            name = roles.get(key) if isinstance(roles, dict) and key is not None else None
            if name is not None:
                found.append(Role.parse(str(name)))
        if found:
            return max(found)
        why = f"token grants no role on this hotel ({self._hotel_id})"
        if claims.get("roles_truncated") is True:
            why += "; the account has more roles than a token carries: use an org-wide grant"
        raise PermissionDenied(why + "; room-limited grants do not count on the LAN")


def _describe(exc: jwt.PyJWTError, audience: str) -> str:
    """Why PyJWT refused a token, in the words a client's error shows."""
    reasons: list[tuple[type[jwt.PyJWTError], str]] = [
        (jwt.ExpiredSignatureError, "expired (refresh it)"),
        (jwt.InvalidAudienceError, f"wrong audience (this gateway accepts {audience!r})"),
        (jwt.InvalidIssuerError, "wrong issuer"),
        (jwt.InvalidSignatureError, "bad signature"),
        (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    ]
    for kind, reason in reasons:
        if isinstance(exc, kind):
            return reason
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"missing claim {exc.claim}"
    return f"malformed ({exc})"


class NoCloudTokens:
    """A gateway that cannot verify cloud tokens says why, instead of 'not recognised'."""

    def __init__(self, why: str) -> None:
        self._why = why

    def verify(self, token: str) -> Principal | None:
        if token.count(".") != 2:
            return None
        raise AuthError(self._why)


def authenticator(config: EdgeConfig) -> Authenticator:
    """The gateway's verifiers: its own staff tokens, then cloud tokens, checked against
    `api.jwks_file` when it is set, else against the keys the relay sent over the bridge."""
    api = config.api
    verifiers: list[Verifier] = [LocalTokens(config.tokens_path)]
    bridge_dir = Identity.directory(config.data_dir)
    if api.jwks_file is not None and api.jwks_file.exists():
        verifiers.append(
            JwksVerifier.from_file(
                api.jwks_file,
                audience=api.jwt_audience,
                issuer=api.jwt_issuer,
                hotel_id=config.hotel_id,
            )
        )
    elif not config.bridge.enabled:
        verifiers.append(NoCloudTokens("cloud tokens are not accepted: the bridge is off"))
    elif not (bridge_dir / "identity.json").exists():
        why = "cloud tokens are not accepted: this gateway is not enrolled with a relay"
        verifiers.append(NoCloudTokens(why + " (bellhop edge enrol) and has no api.jwks_file"))
    else:
        missing = (
            "cloud tokens are not accepted yet: this gateway has not received the relay's"
            " keys (they come when its bridge to the relay first opens)"
        )
        verifiers.append(
            JwksVerifier.from_bridge(
                bridge_dir / trust.FILE_NAME, hotel_id=config.hotel_id, missing=missing
            )
        )
    return Authenticator(verifiers)


class Authenticator:
    def __init__(self, verifiers: Sequence[Verifier]) -> None:
        self._verifiers = list(verifiers)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing authorization metadata (expected 'Bearer <token>')")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("authorization must be 'Bearer <token>'")
        for verifier in self._verifiers:
            principal = verifier.verify(token.strip())
            if principal is not None:
                return principal
        raise AuthError("token not recognised")
