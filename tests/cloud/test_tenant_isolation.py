"""Every route of the OpenAPI document, called by everyone who must not get in.

Driven by the route list: a new route is covered the moment it exists, and
fails here until it declares `x-bellhop-access` and behaves accordingly.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import httpx
import jwt
import pytest
from bellhop_cloud.auth.keys import SigningKey
from bellhop_cloud.relay import Relay
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.cloud.support import Account, Api, World, build_world

PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("HEAD", "/healthz"),
    ("GET", "/readyz"),
    ("HEAD", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("POST", "/v1/gateways/enrol"),
}
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    ]


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    if "anyOf" in node:  # an optional body: the body it may be
        node = next(n for n in node["anyOf"] if n.get("type") != "null")
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def example_body(schema: dict[str, Any], op: dict[str, Any]) -> dict[str, Any] | None:
    body = op.get("requestBody")
    if body is None:
        return None
    model = resolve(schema, body["content"]["application/json"]["schema"])
    examples = model.get("examples")
    assert examples, f"{op['operationId']}: request body has no example"
    return dict(examples[0])


def fill_path(path: str, world: World) -> str:
    values = {
        "org_id": world.org_id,
        "hotel_id": world.hotel_id,
        "room_id": "r000",
        "device_id": "dev-0002",
        "gateway_id": world.gateway_id,
        "grant_id": world.grant_id,
        "user_id": world.viewer.user_id,
        "command_id": world.command_id,
        "alert_id": "alert-0001",
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"path parameter {name} of {path} needs a value in this suite"
        return values[name]

    return re.sub(r"\{(\w+)\}", value, path)


QUERY_VALUES = {
    "metric": "humidity",
    "start": "2000-01-01T00:00:00Z",
    "end": "2100-01-01T00:00:00Z",
}


def required_query(op: dict[str, Any], path: str) -> dict[str, str]:
    """Values for the operation's required query parameters, so that access is what decides."""
    names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query" and p["required"]]
    for name in names:
        assert name in QUERY_VALUES, f"query parameter {name} of {path} needs a value in this suite"
    return {name: QUERY_VALUES[name] for name in names}


def forged_tokens(relay: Relay, world: World) -> dict[str, str]:
    """Tokens that must all be refused, keyed by what is wrong with them."""
    key = relay.tokens.key
    now = int(time.time())
    claims = {
        "iss": relay.config.issuer,
        "aud": relay.config.audience,
        "sub": world.owner.user_id,
        "iat": now,
        "exp": now + 300,
        "jti": "forged",
        "token_use": "access",
    }
    headers = {"kid": key.kid, "typ": "at+jwt"}

    def signed(payload: dict[str, Any], signer: SigningKey = key) -> str:
        return jwt.encode(payload, signer.private_key, algorithm="EdDSA", headers=headers)

    segments = [
        jwt.utils.base64url_encode(json.dumps(part).encode()).decode()
        for part in ({"alg": "none", "kid": key.kid, "typ": "at+jwt"}, claims)
    ]
    stranger = SigningKey.from_private_key(Ed25519PrivateKey.generate())
    return {
        "expired": signed({**claims, "iat": now - 1000, "exp": now - 100}),
        "refresh_token": world.owner.refresh_token,
        "alg_none": ".".join([*segments, ""]),
        "other_key": signed(claims, stranger),
        "other_key_own_kid": jwt.encode(
            claims, stranger.private_key, algorithm="EdDSA", headers=headers
        ),
        "wrong_audience": signed({**claims, "aud": "someone-else"}),
        "wrong_issuer": signed({**claims, "iss": "someone-else"}),
        "not_access_use": signed({**claims, "token_use": "refresh"}),
        "garbage": "not-a-token",
    }


def leaked(response: httpx.Response, world: World) -> list[str]:
    """Victim data in the body, ignoring the echo of the caller's own URL."""
    try:
        body = response.json()
    except ValueError:
        text = response.text
    else:
        if isinstance(body, dict):
            body.pop("instance", None)
        text = json.dumps(body)
    return [s for s in world.secrets if s in text]


def keep_session(account: Account, response: httpx.Response) -> None:
    """Go on with the tokens an answer returns: a password change ends the old session."""
    if response.status_code == 200 and "access_token" in response.text:
        account.access_token = response.json()["access_token"]
        account.refresh_token = response.json()["refresh_token"]


async def test_every_route_declares_who_may_call_it(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    undeclared = [f"{m} {p}" for m, p, op in operations(schema) if "x-bellhop-access" not in op]
    assert not undeclared
    public = {
        (m, p) for m, p, op in operations(schema) if op["x-bellhop-access"]["audience"] == "public"
    }
    assert public == PUBLIC_ROUTES


async def test_no_route_leaks_to_outsiders_or_forged_tokens(api: Api, relay: Relay) -> None:
    world = await build_world(api)
    schema = (await api.http.get("/openapi.json")).json()
    forged = forged_tokens(relay, world)
    checked = 0
    for method, path, op in operations(schema):
        rule = op["x-bellhop-access"]
        if rule["audience"] == "public":
            continue
        url = fill_path(path, world)
        body = example_body(schema, op)
        params = required_query(op, path)
        where = f"{method} {path}"

        async def call(
            headers: dict[str, str],
            *,
            method: str = method,
            url: str = url,
            body: Any = body,
            params: dict[str, str] = params,
        ) -> Any:
            return await api.http.request(method, url, json=body, headers=headers, params=params)

        response = await call({})
        assert response.status_code == 401, where
        assert response.json()["code"] == "unauthenticated", where
        for what, token in forged.items():
            response = await call({"Authorization": f"Bearer {token}"})
            assert response.status_code == 401, (where, what, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert not leaked(response, world), (where, what)

        response = await call(world.outsider.headers)
        keep_session(world.outsider, response)
        if rule["audience"] in {"organisation", "hotel"}:
            # Another tenant cannot even learn that the id exists.
            assert response.status_code == 404, (where, response.text)
        else:
            assert response.status_code < 500, where
        assert not leaked(response, world), (where, "outsider", response.text)

        response = await call(world.viewer.headers)
        keep_session(world.viewer, response)
        if rule.get("permission") in {None, "read_state"}:
            assert response.status_code < 300, (where, response.text)
        else:
            assert response.status_code == 403, (where, "viewer", response.text)
            assert not leaked(response, world), (where, "viewer")
        checked += 1
    assert checked >= 18

    # Nothing the intruders tried changed the victim's data.
    gateways = await api.http.get(
        f"/v1/hotels/{world.hotel_id}/gateways", headers=world.owner.headers
    )
    assert [g["active"] for g in gateways.json()] == [True]
    grants = await api.http.get(f"/v1/orgs/{world.org_id}/grants", headers=world.owner.headers)
    assert world.grant_id in {g["id"] for g in grants.json()}
    hotels = await api.http.get(f"/v1/orgs/{world.org_id}/hotels", headers=world.owner.headers)
    assert len(hotels.json()) == 1


async def test_outsider_sees_only_their_own_organisation(api: Api) -> None:
    world = await build_world(api)
    orgs = (await api.http.get("/v1/orgs", headers=world.outsider.headers)).json()
    assert [o["id"] for o in orgs] == [world.other_org_id]
    audit = await api.http.get(
        f"/v1/orgs/{world.other_org_id}/audit", headers=world.outsider.headers
    )
    assert audit.status_code == 200
    assert not leaked(audit, world)
    assert world.org_id not in audit.text


@pytest.mark.parametrize("scheme", ["Basic", "bearer-but-empty"])
async def test_malformed_authorization_header_is_401(api: Api, scheme: str) -> None:
    header = "Basic dXNlcjpwYXNz" if scheme == "Basic" else "Bearer "
    response = await api.http.get("/v1/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["code"] in {"unauthenticated", "invalid_token"}
