"""LAN API authentication: gateway-minted tokens and cloud JWTs, both offline."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from bellhop_edge.auth import Authenticator, JwksVerifier, LocalTokens, Role
from bellhop_edge.errors import AuthError, PermissionDenied
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def test_local_tokens_are_stored_hashed_and_revocable(tmp_path: Path) -> None:
    tokens = LocalTokens(tmp_path / "tokens.json")
    token = tokens.create("alice", Role.STAFF)
    assert token not in (tmp_path / "tokens.json").read_text()
    auth = Authenticator([LocalTokens(tmp_path / "tokens.json")])
    principal = auth.authenticate(f"Bearer {token}")
    assert (principal.subject, principal.role) == ("alice", Role.STAFF)
    tokens.revoke("alice")
    with pytest.raises(AuthError, match="revoked"):
        Authenticator([LocalTokens(tmp_path / "tokens.json")]).authenticate(f"Bearer {token}")


def test_missing_or_malformed_authorization(tmp_path: Path) -> None:
    auth = Authenticator([LocalTokens(tmp_path / "t.json")])
    with pytest.raises(AuthError, match="missing"):
        auth.authenticate(None)
    with pytest.raises(AuthError, match="Bearer"):
        auth.authenticate("Basic abc")
    with pytest.raises(AuthError, match="not recognised"):
        auth.authenticate("Bearer something")


def test_roles_are_ordered() -> None:
    from bellhop_edge.auth import Principal

    viewer = Principal("v", Role.VIEWER, "local")
    with pytest.raises(PermissionDenied, match="staff"):
        viewer.require(Role.STAFF, "sending commands")
    Principal("m", Role.MANAGER, "local").require(Role.STAFF, "sending commands")


def _jwks(key: Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": kid, "alg": "EdDSA", "use": "sig"}]}


def _token(key: Ed25519PrivateKey, **claims: Any) -> str:
    base = {
        "sub": "user-1",
        "aud": "bellhop-edge",
        "iss": "https://relay.test",
        "exp": int(time.time()) + 300,
        "token_use": "access",
        "hotel_roles": {"h1": "staff"},
    }
    return jwt.encode({**base, **claims}, key, algorithm="EdDSA", headers={"kid": "k1"})


def test_cloud_tokens_verify_offline_against_cached_jwks() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = JwksVerifier(
        _jwks(key, "k1"), audience="bellhop-edge", issuer="https://relay.test", hotel_id="h1"
    )
    auth = Authenticator([verifier])
    assert auth.authenticate(f"Bearer {_token(key)}").role is Role.STAFF
    with pytest.raises(AuthError, match="access"):
        auth.authenticate(f"Bearer {_token(key, token_use='refresh')}")
    with pytest.raises(AuthError, match="expired"):
        auth.authenticate(f"Bearer {_token(key, exp=int(time.time()) - 10)}")
    with pytest.raises(AuthError, match=r"(?i)audience"):
        auth.authenticate(f"Bearer {_token(key, aud='other')}")
    with pytest.raises(PermissionDenied, match="no role"):
        auth.authenticate(f"Bearer {_token(key, hotel_roles={'h2': 'owner'})}")
    other = Ed25519PrivateKey.generate()
    with pytest.raises(AuthError, match="invalid token"):
        auth.authenticate(f"Bearer {_token(other)}")
    unsigned = jwt.encode({"sub": "x"}, None, algorithm="none", headers={"kid": "k1"})  # type: ignore[arg-type]
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {unsigned}")


def test_tokens_minted_while_running_are_accepted(tmp_path: Path) -> None:
    running = Authenticator([LocalTokens(tmp_path / "tokens.json")])
    token = LocalTokens(tmp_path / "tokens.json").create("late-shift", Role.STAFF)
    assert running.authenticate(f"Bearer {token}").subject == "late-shift"
    LocalTokens(tmp_path / "tokens.json").revoke("late-shift")
    with pytest.raises(AuthError):
        running.authenticate(f"Bearer {token}")


def test_a_rotated_cloud_key_is_picked_up_from_the_cached_jwks(tmp_path: Path) -> None:
    import json
    import os

    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    cache = tmp_path / "jwks.json"
    cache.write_text(json.dumps(_jwks(old, "k1")))
    verifier = JwksVerifier.from_file(
        cache, audience="bellhop-edge", issuer="https://relay.test", hotel_id="h1"
    )
    auth = Authenticator([verifier])
    assert auth.authenticate(f"Bearer {_token(old)}").role is Role.STAFF
    cache.write_text(json.dumps(_jwks(new, "k1")))
    os.utime(cache, ns=(1, 10**18))  # a distinct modification time, whatever the clock
    assert auth.authenticate(f"Bearer {_token(new)}").role is Role.STAFF
    with pytest.raises(AuthError):
        auth.authenticate(f"Bearer {_token(old)}")
    cache.write_text("{half written")
    os.utime(cache, ns=(1, 2 * 10**18))
    assert auth.authenticate(f"Bearer {_token(new)}").role is Role.STAFF
