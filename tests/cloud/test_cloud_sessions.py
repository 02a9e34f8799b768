"""An access token lives no longer than its session.

Logout, a password change and refresh-token reuse end sessions; the access
tokens of an ended session are refused within `session_cache_s` on any relay
node, and at once for writes and on the node that ended it. Tokens whose
lifetime is longer than the relay ever issues are refused whatever their
signature.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
from bellhop_cloud.app import create_app
from bellhop_cloud.db.schema import refresh_tokens, users
from bellhop_cloud.errors import InvalidToken
from bellhop_cloud.relay import Relay

from tests.cloud.support import PASSWORD, Account, Api, expect

BOUND_S = 1.0  # session_cache_s in these tests
MARGIN_S = 2.0  # scheduling on a busy machine


@pytest.fixture
def relay_settings() -> dict[str, Any]:
    return {"session_cache_s": BOUND_S}


@pytest.fixture
async def other_node(relay: Relay) -> AsyncIterator[httpx.AsyncClient]:
    """A second relay node on the same database, with caches of its own."""
    node = await Relay.open(relay.config)
    transport = httpx.ASGITransport(app=create_app(node.config, relay=node))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://node-b.test") as http:
            yield http
    finally:
        await node.close()


async def refused_within(http: httpx.AsyncClient, headers: dict[str, str], bound_s: float) -> float:
    """Seconds until `GET /v1/me` refuses `headers`; fails after the bound and a margin."""
    started = time.monotonic()
    deadline = started + bound_s + MARGIN_S
    while True:
        response = await http.get("/v1/me", headers=headers)
        if response.status_code == 401:
            assert response.json()["code"] == "invalid_token"
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
            return time.monotonic() - started
        assert response.status_code == 200, response.text
        assert time.monotonic() < deadline, f"still accepted after {bound_s + MARGIN_S} s"
        await asyncio.sleep(0.05)


async def test_logout_ends_the_access_token(api: Api, other_node: httpx.AsyncClient) -> None:
    ana = await api.account("ana")
    expect(await api.http.get("/v1/me", headers=ana.headers), 200)
    expect(await other_node.get("/v1/me", headers=ana.headers), 200)  # cached there now
    expect(await api.http.post("/v1/auth/logout", json={"refresh_token": ana.refresh_token}), 204)
    assert await refused_within(api.http, ana.headers, 0.0) < MARGIN_S  # this node: at once
    # Writes ask the store on every node; reads trust a verified session a short while.
    write = await other_node.patch("/v1/me", json={"display_name": "x"}, headers=ana.headers)
    assert write.status_code == 401
    assert await refused_within(other_node, ana.headers, BOUND_S) <= BOUND_S + MARGIN_S


async def test_a_password_change_ends_every_other_access_token(
    api: Api, other_node: httpx.AsyncClient
) -> None:
    ana = await api.account("ana")
    phone = await api.login(ana.email)
    phone_headers = {"Authorization": f"Bearer {phone['access_token']}"}
    expect(await other_node.get("/v1/me", headers=phone_headers), 200)
    changed = expect(
        await api.http.post(
            "/v1/me/password",
            json={"current_password": PASSWORD, "new_password": "staple gun lighthouse"},
            headers=ana.headers,
        ),
        200,
    )
    for headers in (ana.headers, phone_headers):
        await refused_within(api.http, headers, 0.0)
    await refused_within(other_node, phone_headers, BOUND_S)
    fresh = {"Authorization": f"Bearer {changed['access_token']}"}
    expect(await other_node.get("/v1/me", headers=fresh), 200)


async def test_refresh_token_reuse_ends_the_family_access_tokens(
    api: Api, other_node: httpx.AsyncClient
) -> None:
    ana = await api.account("ana")
    rotated = expect(
        await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token}), 200
    )
    newest = {"Authorization": f"Bearer {rotated['access_token']}"}
    expect(await other_node.get("/v1/me", headers=newest), 200)
    reused = await api.http.post("/v1/auth/refresh", json={"refresh_token": ana.refresh_token})
    assert reused.json()["code"] == "refresh_token_reused"
    for headers in (ana.headers, newest):
        await refused_within(api.http, headers, 0.0)
    await refused_within(other_node, newest, BOUND_S)
    # Another session of the same account is untouched.
    other = await api.login(ana.email)
    expect(await api.http.get("/v1/me", headers=_bearer(other["access_token"])), 200)


async def test_a_token_of_a_deleted_account_is_401_on_every_route(api: Api, relay: Relay) -> None:
    ana = await api.account("ana")
    expect(await api.http.get("/v1/orgs", headers=ana.headers), 200)  # a verified session
    async with relay.store.write() as conn:
        await conn.execute(refresh_tokens.delete().where(refresh_tokens.c.user_id == ana.user_id))
        await conn.execute(users.delete().where(users.c.id == ana.user_id))
    for method, url, body in [
        ("POST", "/v1/orgs", {"name": "Ghost Org"}),
        ("PATCH", "/v1/me", {"display_name": "Ghost"}),
        ("POST", "/v1/me/password", {"current_password": PASSWORD, "new_password": "x" * 12}),
        ("GET", "/v1/me", None),
    ]:
        response = await api.http.request(method, url, json=body, headers=ana.headers)
        assert response.status_code == 401, (method, url, response.text)
        assert response.json()["code"] == "invalid_token"
    await refused_within(api.http, ana.headers, BOUND_S)
    started = time.monotonic()
    while (await api.http.get("/v1/orgs", headers=ana.headers)).status_code != 401:
        assert time.monotonic() < started + BOUND_S + MARGIN_S
        await asyncio.sleep(0.05)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _signed(relay: Relay, account: Account, **changes: Any) -> str:
    """A token signed with the relay's own key, claims as issued but for `changes`."""
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    key = relay.tokens.key
    return jwt.encode(
        claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "at+jwt"}
    )


async def test_lifetimes_longer_than_the_relay_issues_are_refused(api: Api, relay: Relay) -> None:
    ana = await api.account("ana")
    now = int(time.time())
    ttl = relay.config.access_token_ttl_s
    refused = {
        "a year": _signed(relay, ana, iat=now, exp=now + 365 * 86400),
        "one second too long": _signed(relay, ana, iat=now - 10, exp=now - 10 + ttl + 1),
        "issued in the future": _signed(relay, ana, iat=now + 3600, exp=now + 3600 + ttl),
        "no session": _signed(relay, ana, sid=None),
        "an unknown session": _signed(relay, ana, sid="fam_0000000000000000"),
        "another account's session": _signed(relay, ana, sub="usr_0000000000000000"),
    }
    for what, token in refused.items():
        response = await api.http.get("/v1/me", headers=_bearer(token))
        assert response.status_code == 401, (what, response.text)
        assert response.json()["code"] == "invalid_token", what
    accepted = _signed(relay, ana, iat=now - 10, exp=now - 10 + ttl)
    expect(await api.http.get("/v1/me", headers=_bearer(accepted)), 200)


async def test_the_session_is_in_the_token_and_the_jwks_still_verifies_it(
    api: Api, relay: Relay
) -> None:
    ana = await api.account("ana")
    (jwk,) = expect(await api.http.get("/.well-known/jwks.json"), 200)["keys"]
    claims = jwt.decode(
        ana.access_token, jwt.PyJWK(jwk), algorithms=["EdDSA"], audience=relay.config.audience
    )
    assert claims["sid"].startswith("fam_")
    assert {"iss", "aud", "sub", "iat", "exp", "jti", "token_use"} <= set(claims)
    assert claims["exp"] - claims["iat"] == relay.config.access_token_ttl_s


async def test_many_streams_rechecking_one_session_together_cost_one_query(
    api: Api, relay: Relay, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = await api.account("owner")
    principal = relay.tokens.verify(owner.access_token)
    sessions = relay.sessions
    lookups = 0
    real = sessions._lookup

    async def counted(sid: str, user_id: str) -> bool:
        nonlocal lookups
        lookups += 1
        return await real(sid, user_id)

    monkeypatch.setattr(sessions, "_lookup", counted)
    await asyncio.gather(*(sessions.require_live(principal, fresh=True) for _ in range(200)))
    assert lookups == 1
    # Ended here: the next check asks again, and refuses.
    sessions.ended(principal.session_id)
    async with relay.store.write() as conn:
        await conn.execute(
            refresh_tokens.update()
            .where(refresh_tokens.c.family_id == principal.session_id)
            .values(revoked_at=datetime.now(UTC))
        )
    results = await asyncio.gather(
        *(sessions.require_live(principal, fresh=True) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, InvalidToken) for r in results)
    assert lookups == 2
