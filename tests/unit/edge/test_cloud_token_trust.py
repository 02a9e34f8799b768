"""Cloud access tokens on the LAN API: the relay's keys as the bridge delivers them
(checked at the boundary, cached atomically), and the role a token gives here."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import Opened
from bellhop_edge.auth import Authenticator, JwksVerifier, Role, authenticator
from bellhop_edge.bridge import trust
from bellhop_edge.bridge.identity import Identity
from bellhop_edge.config import EdgeConfig
from bellhop_edge.errors import AuthError, PermissionDenied
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.unit.bridge.test_protocol import edge, pump, relay

HOTEL, ORG = "htl_1", "org_1"
ISSUER, AUDIENCE = "bellhop-cloud", "bellhop-edge"


def jwk(key: Ed25519PrivateKey, kid: str = "k1") -> dict[str, Any]:
    public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "alg": "EdDSA", "use": "sig"}


def sent(keys: list[dict[str, Any]], **fields: str) -> bridge_pb2.TokenTrust:
    """What a relay's Welcome carries."""
    values = {"issuer": ISSUER, "audience": AUDIENCE, "org_id": ORG, **fields}
    return bridge_pb2.TokenTrust(jwks=json.dumps({"keys": keys}), **values)


def token(key: Ed25519PrivateKey, kid: str = "k1", **claims: Any) -> str:
    base = {
        "iss": ISSUER,
        "aud": ["bellhop", AUDIENCE],
        "sub": "usr_1",
        "exp": int(time.time()) + 300,
        "token_use": "access",
        "hotel_roles": {},
        "org_roles": {},
    }
    return jwt.encode({**base, **claims}, key, algorithm="EdDSA", headers={"kid": kid})


# -- the boundary ---------------------------------------------------------------------------
KEY = Ed25519PrivateKey.generate()
EC = jwt.algorithms.ECAlgorithm.to_jwk(generate_private_key(SECP256R1()).public_key(), as_dict=True)
REFUSED: dict[str, bridge_pb2.TokenTrust] = {
    "larger than": bridge_pb2.TokenTrust(
        jwks=json.dumps({"keys": [jwk(KEY)], "pad": "x" * trust.MAX_JWKS_BYTES}),
        issuer=ISSUER,
        audience=AUDIENCE,
    ),
    "not JSON": bridge_pb2.TokenTrust(jwks="{keys", issuer=ISSUER, audience=AUDIENCE),
    # Nested past the parser's depth, within the size limit: RecursionError, not ValueError.
    "not JSON ": bridge_pb2.TokenTrust(
        jwks="[" * 30_000 + "]" * 30_000, issuer=ISSUER, audience=AUDIENCE
    ),
    "1-16 keys": sent([]),
    "1-16 keys ": sent([jwk(KEY, f"k{n}") for n in range(trust.MAX_KEYS + 1)]),
    "only Ed25519": sent([{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k1"}]),
    "only Ed25519 ": sent([{"kty": "oct", "k": "c2VjcmV0", "kid": "k1", "alg": "HS256"}]),
    "not a EdDSA signing key": sent([{**jwk(KEY), "alg": "ES256"}]),
    "private part": sent([{**jwk(KEY), "d": "AAAA"}]),
    "valid kid": sent([jwk(KEY, "k 1")]),
    "valid kid ": sent([{k: v for k, v in jwk(KEY).items() if k != "kid"}]),
    "share a kid": sent([jwk(KEY), jwk(Ed25519PrivateKey.generate())]),
    "key k1": sent([{**jwk(KEY), "x": "not-a-key"}]),
    "issuer": sent([jwk(KEY)], issuer=""),
    "audience": sent([jwk(KEY)], audience="bellhop\x1b[31m"),
}


@pytest.mark.parametrize("reason", sorted(REFUSED))
def test_what_the_relay_sends_is_checked_at_the_boundary(reason: str) -> None:
    with pytest.raises(trust.TrustError, match=reason.strip()):
        trust.validate(REFUSED[reason])


def test_eddsa_and_es256_keys_are_accepted_and_only_their_public_parts_kept() -> None:
    doc = trust.validate(sent([{**jwk(KEY), "extra": "dropped"}, {**EC, "kid": "k2"}]))
    assert [key["alg"] for key in doc["keys"]] == ["EdDSA", "ES256"]
    assert "extra" not in doc["keys"][0]
    assert (doc["issuer"], doc["audience"], doc["org_id"]) == (ISSUER, AUDIENCE, ORG)


def test_the_cache_is_replaced_whole_only_when_it_changes(tmp_path: Path) -> None:
    cache = trust.TrustCache(tmp_path / "bridge")
    assert cache.keep(sent([jwk(KEY)]))
    assert cache.path.stat().st_mode & 0o777 == 0o600
    before = cache.path.read_bytes(), cache.path.stat().st_mtime_ns
    assert not cache.keep(sent([jwk(KEY)]))  # the same: untouched
    assert not cache.keep(None)  # an older relay: kept
    assert not cache.keep(REFUSED["private part"])  # refused: kept
    assert not cache.keep(REFUSED["not JSON "])  # never raises, whatever it holds
    assert (cache.path.read_bytes(), cache.path.stat().st_mtime_ns) == before
    assert cache.keep(sent([jwk(Ed25519PrivateKey.generate(), "k2")]))
    assert [key["kid"] for key in (trust.read(cache.path) or {})["keys"]] == ["k2"]
    assert sorted(p.name for p in cache.path.parent.iterdir()) == [trust.FILE_NAME]


def test_a_welcome_from_an_older_relay_carries_no_trust_and_a_newer_one_does() -> None:
    for given in (None, sent([jwk(KEY)])):
        e, r = edge(), relay()
        pump(e, r, 0.0)
        r.events_received()
        r.challenge(0.0)
        pump(e, r, 0.0)
        r.events_received()
        r.welcome({}, 0.0, token_trust=given)
        pump(e, r, 0.0)
        (opened,) = e.events_received()
        assert isinstance(opened, Opened)
        assert opened.token_trust == given


# -- verifying against the bridge's cache ---------------------------------------------------
def bridged(tmp_path: Path) -> tuple[trust.TrustCache, Authenticator]:
    cache = trust.TrustCache(tmp_path / "bridge")
    verifier = JwksVerifier.from_bridge(cache.path, hotel_id=HOTEL, missing="no keys yet")
    return cache, Authenticator([verifier])


def test_until_the_keys_arrive_cloud_tokens_are_refused_then_accepted_without_a_restart(
    tmp_path: Path,
) -> None:
    cache, auth = bridged(tmp_path)
    good = token(KEY, hotel_roles={HOTEL: "manager"})
    with pytest.raises(AuthError, match="no keys yet"):
        auth.authenticate(f"Bearer {good}")
    cache.keep(sent([jwk(KEY)]))
    principal = auth.authenticate(f"Bearer {good}")
    assert (principal.subject, principal.role, principal.source) == ("usr_1", Role.MANAGER, "cloud")


ROLES: list[tuple[dict[str, str], dict[str, str], Role | None]] = [
    ({HOTEL: "staff"}, {}, Role.STAFF),
    ({}, {ORG: "viewer"}, Role.VIEWER),
    ({HOTEL: "staff"}, {ORG: "admin"}, Role.ADMIN),  # the higher of the two
    ({HOTEL: "owner"}, {ORG: "viewer"}, Role.OWNER),
    ({"htl_other": "owner"}, {"org_other": "owner"}, None),
    ({}, {}, None),
]


@pytest.mark.parametrize(("hotel_roles", "org_roles", "role"), ROLES)
def test_the_role_is_the_higher_of_the_hotels_and_its_organisations(
    tmp_path: Path, hotel_roles: dict[str, str], org_roles: dict[str, str], role: Role | None
) -> None:
    cache, auth = bridged(tmp_path)
    cache.keep(sent([jwk(KEY)]))
    bearer = f"Bearer {token(KEY, hotel_roles=hotel_roles, org_roles=org_roles)}"
    if role is None:
        with pytest.raises(PermissionDenied, match=r"no role on this hotel.*room-limited"):
            auth.authenticate(bearer)
    else:
        assert auth.authenticate(bearer).role is role


def test_refusals_say_why(tmp_path: Path) -> None:
    cache, auth = bridged(tmp_path)
    cache.keep(sent([jwk(KEY)]))
    roles: dict[str, Any] = {"hotel_roles": {HOTEL: "owner"}}
    cases = {
        "expired": token(KEY, exp=int(time.time()) - 5, **roles),
        "wrong audience": token(KEY, aud="bellhop", **roles),
        "wrong issuer": token(KEY, iss="elsewhere", **roles),
        "bad signature": token(Ed25519PrivateKey.generate(), **roles),
        "does not know": token(KEY, kid="k9", **roles),
        "not an access token": token(KEY, token_use="refresh", **roles),
    }
    for reason, bad in cases.items():
        with pytest.raises(AuthError, match=reason):
            auth.authenticate(f"Bearer {bad}")
    truncated = token(KEY, hotel_roles={"htl_x": "owner"}, roles_truncated=True)
    with pytest.raises(PermissionDenied, match="more roles than a token carries"):
        auth.authenticate(f"Bearer {truncated}")


def test_a_rotation_is_picked_up_and_the_org_follows_the_cache(tmp_path: Path) -> None:
    cache, auth = bridged(tmp_path)
    cache.keep(sent([jwk(KEY)]))
    new = Ed25519PrivateKey.generate()
    cache.keep(sent([jwk(new, "k2")], org_id="org_2"))
    os.utime(cache.path, ns=(1, 10**18))  # a distinct modification time, whatever the clock
    assert auth.authenticate(f"Bearer {token(new, 'k2', org_roles={'org_2': 'staff'})}").role
    with pytest.raises(AuthError, match="does not know"):
        auth.authenticate(f"Bearer {token(KEY, org_roles={'org_2': 'staff'})}")


# -- which verifier a gateway gets ----------------------------------------------------------
def config(tmp_path: Path, **extra: Any) -> EdgeConfig:
    return EdgeConfig(hotel_id=HOTEL, data_dir=tmp_path / "edge", **extra)


def test_a_gateway_says_why_it_cannot_take_cloud_tokens(tmp_path: Path) -> None:
    bearer = f"Bearer {token(KEY, hotel_roles={HOTEL: 'owner'})}"
    with pytest.raises(AuthError, match="not enrolled"):
        authenticator(config(tmp_path)).authenticate(bearer)
    with pytest.raises(AuthError, match="bridge is off"):
        authenticator(config(tmp_path, bridge={"enabled": False})).authenticate(bearer)
    Identity("gw_1", HOTEL, "http://relay.test").save(tmp_path / "edge")
    enrolled = authenticator(config(tmp_path))
    with pytest.raises(AuthError, match="has not received the relay's keys"):
        enrolled.authenticate(bearer)
    trust.TrustCache(Identity.directory(tmp_path / "edge")).keep(sent([jwk(KEY)]))
    assert enrolled.authenticate(bearer).role is Role.OWNER


def test_an_explicit_jwks_file_wins_over_the_bridges_copy(tmp_path: Path) -> None:
    Identity("gw_1", HOTEL, "http://relay.test").save(tmp_path / "edge")
    trust.TrustCache(Identity.directory(tmp_path / "edge")).keep(sent([jwk(KEY)]))
    other = Ed25519PrivateKey.generate()
    explicit = tmp_path / "jwks.json"
    explicit.write_text(json.dumps({"keys": [jwk(other)]}))
    auth = authenticator(config(tmp_path, api={"jwks_file": str(explicit)}))
    assert auth.authenticate(f"Bearer {token(other, hotel_roles={HOTEL: 'staff'})}").role
    with pytest.raises(AuthError, match="bad signature"):
        auth.authenticate(f"Bearer {token(KEY, hotel_roles={HOTEL: 'staff'})}")
