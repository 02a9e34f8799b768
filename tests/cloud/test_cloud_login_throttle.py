"""Login attempts are limited per account and per address."""

from __future__ import annotations

import os
import secrets

import httpx
import pytest
from bellhop_cloud.app import create_app
from bellhop_cloud.ratelimit import RedisRateLimiter
from bellhop_cloud.relay import Relay

from tests.cloud.support import PASSWORD, Api, expect

REDIS_URL = os.environ.get("BELLHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def test_failed_logins_lock_the_account_not_the_address(api: Api, relay: Relay) -> None:
    ana = await api.account("ana")
    bob = await api.account("bob")
    limit = relay.config.login_account_limit
    for _ in range(limit):
        wrong = await api.http.post(
            "/v1/auth/login", json={"email": ana.email, "password": "wrong"}
        )
        assert wrong.status_code == 401
    locked = await api.http.post("/v1/auth/login", json={"email": ana.email, "password": "x"})
    assert locked.status_code == 429
    assert locked.json()["code"] == "rate_limited"
    assert int(locked.headers["retry-after"]) >= 1
    # Even the right password waits out the window: guessing gets no oracle.
    right = await api.http.post(
        "/v1/auth/login", json={"email": ana.email, "password": "correct horse battery"}
    )
    assert right.status_code == 429
    await api.login(bob.email)  # another account from the same address is unaffected
    metrics = (await api.http.get("/metrics")).text
    assert "bellhop_cloud_login_throttled_total 2.0" in metrics


async def test_one_address_is_limited_across_accounts(api: Api, relay: Relay) -> None:
    app = create_app(relay.config, relay=relay)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 5000))
    statuses = []
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as spray:
        for n in range(relay.config.login_address_limit + 1):
            response = await spray.post(
                "/v1/auth/login", json={"email": api.email(f"u{n}"), "password": "guess"}
            )
            statuses.append(response.status_code)
    assert statuses[:-1] == [401] * relay.config.login_address_limit
    assert statuses[-1] == 429
    ana = await api.account("ana")  # a different address still logs in
    expect(await api.http.get("/v1/me", headers=ana.headers), 200)


async def test_a_lock_is_audited_once_for_the_members_organisation(api: Api, relay: Relay) -> None:
    owner = await api.account("owner")
    ana = await api.account("ana")
    org_id = await api.org(owner, "Seaside")
    await api.grant(owner, org_id, ana, "staff")
    for _ in range(relay.config.login_account_limit + 2):
        await api.http.post("/v1/auth/login", json={"email": ana.email, "password": "wrong"})
    page = expect(await api.http.get(f"/v1/orgs/{org_id}/audit", headers=owner.headers), 200)
    ana_actions = [e["action"] for e in page["items"] if e["actor_id"] == ana.user_id]
    assert ana_actions.count("login.throttled") == 1
    assert ana_actions.count("login.failed") == relay.config.login_account_limit
    assert "wrong" not in str(page)


@pytest.mark.redis
async def test_relay_nodes_sharing_redis_throttle_together(
    api: Api, relay: Relay, test_name: str
) -> None:
    """Two relay nodes on one database and one Redis: failures on one lock the other."""
    if os.environ.get("BELLHOP_TEST_NO_REDIS") == "1" and os.environ.get("CI") != "true":
        pytest.skip("scripts/check could not start Redis (BELLHOP_TEST_NO_REDIS=1)")
    ana = await api.account("ana")
    prefix = f"bellhop-test:{test_name}:{secrets.token_hex(4)}:"
    nodes = []
    try:
        for _ in range(2):
            limiter = RedisRateLimiter.from_url(REDIS_URL, timeout_s=1.0, prefix=prefix)
            nodes.append(await Relay.open(relay.config, limiter=limiter))
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=create_app(node.config, relay=node)),
                base_url="http://relay.test",
            )
            for node in nodes
        ]
        wrong = {"email": ana.email, "password": "wrong"}
        for _ in range(relay.config.login_account_limit):
            assert (await clients[0].post("/v1/auth/login", json=wrong)).status_code == 401
        other_node = await clients[1].post(
            "/v1/auth/login", json={"email": ana.email, "password": PASSWORD}
        )
        assert other_node.status_code == 429
        for http in clients:
            await http.aclose()
    finally:
        for node in nodes:
            await node.close()


async def test_registration_is_throttled_per_address(api: Api, relay: Relay) -> None:
    """Each sign-up costs an Argon2id hash: one address gets a few per window."""
    limit = relay.config.register_address_limit
    assert 1 <= limit <= 20
    app = create_app(relay.config, relay=relay)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.9", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as signups:
        statuses = []
        for n in range(limit + 2):
            body = {"email": api.email(f"s{n}"), "password": PASSWORD, "display_name": "S"}
            statuses.append((await signups.post("/v1/auth/register", json=body)).status_code)
        taken = {"email": api.email("s0"), "password": PASSWORD, "display_name": "S"}
        refused = await signups.post("/v1/auth/register", json=taken)
    assert statuses == [201] * limit + [429, 429]
    assert refused.status_code == 429  # counted before the email is looked at: no oracle
    problem = refused.json()
    assert problem["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= relay.config.register_address_window_s
    await api.account("elsewhere")  # another address still signs up
    metrics = (await api.http.get("/metrics")).text
    assert "bellhop_cloud_registration_throttled_total 3.0" in metrics
