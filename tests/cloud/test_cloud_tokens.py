"""Signing keys, access tokens and the JWKS, without I/O beyond the key file."""

from __future__ import annotations

import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest
from bellhop_cloud.auth.keys import SigningKey, load_or_create_signing_key
from bellhop_cloud.auth.tokens import AccessTokens
from bellhop_cloud.errors import ConfigError, InvalidToken, TokenExpired

from tests.cloud.support import Api


def tokens(key: SigningKey | None = None, ttl_s: int = 300) -> AccessTokens:
    return AccessTokens(key or SigningKey.generate(), issuer="iss", audience="aud", ttl_s=ttl_s)


def test_key_is_created_once_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    first = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = load_or_create_signing_key(path)
    assert first.kid == second.kid
    assert "PRIVATE" not in repr(first)


def test_relays_starting_together_end_up_with_one_whole_key(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    start = threading.Barrier(16)

    def one() -> str:
        start.wait()
        return load_or_create_signing_key(path).kid

    with ThreadPoolExecutor(16) as pool:
        kids = set(pool.map(lambda _: one(), range(16)))
    assert kids == {load_or_create_signing_key(path).kid}
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]  # no drafts left behind


def test_a_broken_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError):
        load_or_create_signing_key(path)


def test_issued_token_verifies_and_carries_the_user() -> None:
    issuer = tokens()
    issued = issuer.issue("usr_1", "fam_1")
    principal = issuer.verify(issued.token)
    assert principal.user_id == "usr_1"
    assert issued.expires_in == 300
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "EdDSA", "kid": issuer.key.kid, "typ": "at+jwt"}


def test_expiry_holds_even_for_a_cached_token() -> None:
    issuer = tokens(ttl_s=60)
    issued = issuer.issue("usr_1", "fam_1", now=time.time())
    issuer.verify(issued.token)  # cached now
    with pytest.raises(TokenExpired):
        issuer.verify(issued.token, now=time.time() + 61)
    with pytest.raises(TokenExpired):
        issuer.verify(issued.token, now=time.time() + 61)


def test_jwks_lets_a_third_party_verify_offline() -> None:
    issuer = tokens()
    issued = issuer.issue("usr_1", "fam_1")
    (jwk,) = issuer.jwks()["keys"]
    assert set(jwk) == {"kty", "crv", "x", "kid", "alg", "use"}
    public = jwt.PyJWK(jwk)
    claims = jwt.decode(issued.token, public, algorithms=["EdDSA"], audience="aud")
    assert claims["sub"] == "usr_1"
    assert claims["token_use"] == "access"
    assert claims["exp"] - claims["iat"] <= 900


def test_hs256_with_the_public_key_as_secret_is_refused() -> None:
    issuer = tokens()
    x = issuer.jwks()["keys"][0]["x"]
    forged = jwt.encode(
        {"sub": "usr_1", "aud": "aud", "iss": "iss", "exp": time.time() + 60},
        x,
        algorithm="HS256",
        headers={"kid": issuer.key.kid, "typ": "at+jwt"},
    )
    with pytest.raises(InvalidToken):
        issuer.verify(forged)


def test_token_of_another_relay_is_refused() -> None:
    with pytest.raises(InvalidToken):
        tokens().verify(tokens().issue("usr_1", "fam_1").token)


async def test_jwks_is_served_cacheable(api: Api) -> None:
    response = await api.http.get("/.well-known/jwks.json")
    assert response.headers["cache-control"] == "public, max-age=300"
    (key,) = response.json()["keys"]
    assert key["kid"] == api.relay.tokens.key.kid
    assert "d" not in key  # never the private part
