"""What every answer carries: no caching of secrets; HEAD on health routes.

The walk is driven by the OpenAPI document, like the isolation suite: a new
route is covered the moment it exists.
"""

from __future__ import annotations

import httpx
from bellhop_cloud.relay import Relay

from tests.cloud.serving import serving
from tests.cloud.support import Api, build_world, expect
from tests.cloud.test_tenant_isolation import example_body, fill_path, keep_session, operations

# Answers with a secret in them: tokens, enrolment tokens.
SECRET_ROUTES = {
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/me/password"),
    ("POST", "/v1/hotels/{hotel_id}/enrolment-tokens"),
}
# The only answers meant to be cached: public keys.
CACHEABLE = {("GET", "/.well-known/jwks.json")}


async def test_every_answer_is_no_store_unless_it_is_public(api: Api) -> None:
    world = await build_world(api)
    schema = expect(await api.http.get("/openapi.json"), 200)
    secrets_seen = set()
    for method, path, op in operations(schema):
        body = example_body(schema, op)
        if (method, path) == ("POST", "/v1/auth/login"):
            body = {"email": world.owner.email, "password": "correct horse battery"}
        if (method, path) == ("POST", "/v1/auth/refresh"):
            body = {"refresh_token": world.owner.refresh_token}
        if (method, path) == ("POST", "/v1/auth/logout"):  # a session of its own
            body = {"refresh_token": (await api.login(world.owner.email))["refresh_token"]}
        response = await api.http.request(
            method, fill_path(path, world), json=body, headers=world.owner.headers
        )
        keep_session(world.owner, response)
        if (method, path) == ("POST", "/v1/auth/refresh") and response.status_code == 200:
            world.owner.refresh_token = response.json()["refresh_token"]
        where = (method, path, response.status_code)
        assert response.status_code < 500, where
        if (method, path) in CACHEABLE:
            assert response.headers["cache-control"].startswith("public"), where
            continue
        assert response.headers.get("cache-control") == "no-store", where
        if (method, path) in SECRET_ROUTES:
            assert response.status_code < 300, (where, response.text)
            secrets_seen.add((method, path))
    assert secrets_seen == SECRET_ROUTES
    # Error answers too: a refused login, an unknown route, a bad body.
    for response in [
        await api.http.post("/v1/auth/login", json={"email": "x@example.com", "password": "x"}),
        await api.http.get("/v1/nowhere"),
        await api.http.post("/v1/auth/login", content=b"{", headers={"content-type": "a/json"}),
    ]:
        assert response.status_code >= 400
        assert response.headers["cache-control"] == "no-store"


async def test_health_routes_answer_head_as_get_without_a_body(api: Api, relay: Relay) -> None:
    for path in ("/healthz", "/readyz"):
        get = await api.http.get(path)
        head = await api.http.head(path)
        assert (head.status_code, get.status_code) == (200, 200), path
        assert head.content == b""
        assert head.headers["content-type"] == get.headers["content-type"]
        assert head.headers["content-length"] == get.headers["content-length"]
    # Other routes still refuse HEAD, with a 405 that has no body either.
    refused = await api.http.head("/v1/me")
    assert refused.status_code == 405
    assert refused.content == b""
    # And through a real server, which must not send a body after a HEAD.
    with serving(relay.config) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for path in ("/healthz", "/readyz"):
                head = await http.head(path)
                assert (head.status_code, head.content) == (200, b""), path
            assert (await http.get("/healthz")).json() == {"status": "ok"}
