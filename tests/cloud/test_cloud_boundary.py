"""Bad input at the boundary: the same clear 422 on both stores, never a 500.

Every text that crosses the boundary (bodies, path and query parameters,
decoded cursors, the headers the relay reads) is refused when it holds a
control character, because PostgreSQL cannot store NUL and SQLite can: the
two stores must behave alike. Bodies must be strict JSON in UTF-8.
"""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.app import ROUTE_MODULES, create_app
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.relay import Relay
from fastapi.routing import APIRoute

from tests.cloud.support import PASSWORD, Api, expect


def invalid(response_status: int, body: dict[str, object]) -> None:
    assert (response_status, body["code"]) == (422, "invalid_request"), body


async def test_audit_before_past_64_bits_is_invalid_request(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    for value in (2**63, 2**64, 10**30):
        response = await api.http.get(
            f"/v1/orgs/{org_id}/audit", params={"before": str(value)}, headers=owner.headers
        )
        invalid(response.status_code, response.json())
        assert response.headers["content-type"] == "application/problem+json"
    largest = await api.http.get(
        f"/v1/orgs/{org_id}/audit", params={"before": str(2**63 - 1)}, headers=owner.headers
    )
    assert len(expect(largest, 200)["items"]) == 1


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85"])
async def test_control_characters_are_refused_wherever_text_enters(api: Api, char: str) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.seed_devices(hotel_id, 3, rooms=2)
    auth = owner.headers
    register = {"email": api.email("new"), "password": PASSWORD, "display_name": f"a{char}b"}
    calls = [
        ("POST", "/v1/auth/register", {"json": register}),
        ("POST", "/v1/auth/login", {"json": {"email": f"a{char}@example.com", "password": "x"}}),
        ("POST", "/v1/orgs", {"json": {"name": f"Sea{char}side"}, "headers": auth}),
        ("PATCH", "/v1/me", {"json": {"display_name": f"{char}"}, "headers": auth}),
        ("POST", f"/v1/orgs/{org_id}/hotels", {"json": {"name": f"L{char}"}, "headers": auth}),
        ("GET", f"/v1/hotels/{hotel_id}{quote(char)}", {"headers": auth}),
        ("GET", f"/v1/hotels/{hotel_id}/rooms/r{quote(char)}", {"headers": auth}),
        ("GET", f"/v1/hotels/{hotel_id}/devices", {"params": {"room_id": char}, "headers": auth}),
        ("GET", f"/v1/hotels/{hotel_id}/devices/d{quote(char)}", {"headers": auth}),
        (
            "GET",
            f"/v1/hotels/{hotel_id}/devices",
            {"params": {"cursor": _cursor(char)}, "headers": auth},
        ),
        (
            "GET",
            f"/v1/hotels/{hotel_id}/rooms",
            {"params": {"cursor": _cursor(f"r{char}")}, "headers": auth},
        ),
        ("GET", f"/v1/orgs/{org_id}/hotels", {"params": {"x": char}, "headers": auth}),
        (
            "POST",
            f"/v1/orgs/{org_id}/grants",
            {"json": {"email": owner.email, "role": "viewer", "rooms": [char]}, "headers": auth},
        ),
    ]
    for method, url, kwargs in calls:
        response = await api.http.request(method, url, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 422, (method, url, response.status_code, response.text)
        assert response.json()["code"] == "invalid_request", (method, url)
        assert response.headers["content-type"] == "application/problem+json"
        assert char not in response.json()["detail"]
    # Nothing was stored: the organisation still has its one hotel and no new member.
    hotels = expect(await api.http.get(f"/v1/orgs/{org_id}/hotels", headers=auth), 200)
    assert [h["name"] for h in hotels] == ["Lisbon"]


async def test_escaped_nul_and_lone_surrogates_in_json_are_refused(api: Api) -> None:
    owner = await api.account("owner")
    for name in ('"a\\u0000b"', '"\\ud800"', '"\\udfff x"'):
        response = await api.http.post(
            "/v1/orgs",
            content=f'{{"name": {name}}}'.encode(),
            headers={**owner.headers, "content-type": "application/json"},
        )
        invalid(response.status_code, response.json())
        assert response.json()["errors"][0]["loc"] == ["body", "name"]
    key = await api.http.post(
        "/v1/auth/login",
        content=b'{"email": "a@example.com", "password": "x", "\\u0000": 1}',
        headers={"content-type": "application/json"},
    )
    invalid(key.status_code, key.json())


async def test_a_control_character_in_the_authorization_header_is_refused(api: Api) -> None:
    owner = await api.account("owner")
    response = await api.http.get(
        "/v1/me", headers={"Authorization": f"{owner.headers['Authorization']}\x7f"}
    )
    invalid(response.status_code, response.json())
    assert response.json()["errors"][0]["loc"] == ["header", "authorization"]


BAD_BODIES = {
    "not UTF-8": b'{"email": "\xff@example.com", "password": "x"}',
    "nested 1,000 deep": b"[" * 1000 + b"]" * 1000,
    "nested 40 deep": b'{"email": ' + b"[" * 40 + b"]" * 40 + b', "password": "x"}',
    "UTF-8 byte order mark": b'\xef\xbb\xbf{"email": "a@example.com", "password": "x"}',
    "UTF-16": json.dumps({"email": "a@example.com", "password": "x"}).encode("utf-16"),
    "UTF-32": json.dumps({"email": "a@example.com", "password": "x"}).encode("utf-32-le"),
    "duplicate keys": b'{"email": "a@example.com", "password": "x", "password": "y"}',
    "NaN": b'{"email": "a@example.com", "password": NaN}',
    "a 5,000-digit number": b'{"email": "a@example.com", "password": ' + b"9" * 5000 + b"}",
    "trailing data": b'{"email": "a@example.com", "password": "x"} {}',
}


@pytest.mark.parametrize("what", sorted(BAD_BODIES))
async def test_malformed_bodies_are_invalid_request(api: Api, what: str) -> None:
    response = await api.http.post(
        "/v1/auth/login", content=BAD_BODIES[what], headers={"content-type": "application/json"}
    )
    assert response.status_code == 422, (what, response.status_code, response.text)
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["errors"][0]["loc"][0] == "body"
    assert response.headers["content-type"] == "application/problem+json"


async def test_a_well_formed_body_still_reaches_the_route(api: Api) -> None:
    response = await api.http.post(
        "/v1/auth/login",
        content='{"email": "ana@example.com", "password": "pässwörd ✓"}'.encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials")


async def test_a_body_over_the_limit_is_too_large(api: Api, relay: Relay) -> None:
    limit = relay.config.max_body_bytes
    response = await api.http.post(
        "/v1/auth/login",
        content=b'{"email": "' + b"a" * limit + b'", "password": "x"}',
        headers={"content-type": "application/json"},
    )
    assert (response.status_code, response.json()["code"]) == (413, "too_large")


async def test_a_500_is_logged_once_by_class_and_reference_without_parameters(
    api: Api, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    owner = await api.account("owner")
    async with relay.store.write() as conn:
        await conn.execute(sa.text("ALTER TABLE organisations RENAME TO organisations_moved"))
    secret = f"Org of {owner.email}"
    with caplog.at_level(logging.INFO):  # what `bellhop cloud run` logs
        # The app answers the 500 itself; were it to re-raise (for the server to log
        # a second copy), this call would raise instead of returning the answer.
        response = await api.http.post("/v1/orgs", json={"name": secret}, headers=owner.headers)
    assert response.status_code == 500
    problem = response.json()
    assert problem["code"] == "internal_error"
    reference = response.headers["x-request-id"]
    assert reference in problem["detail"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert reference in logged
    assert "ProgrammingError" in logged or "OperationalError" in logged
    assert secret not in logged
    assert owner.email not in logged
    assert owner.email not in response.text


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00"])
async def test_a_time_outside_the_representable_range_is_invalid_request(
    api: Api, moment: str
) -> None:
    owner = await api.account("owner")
    viewer = await api.account("viewer")
    org_id = await api.org(owner, "Seaside")
    response = await api.http.post(
        f"/v1/orgs/{org_id}/grants",
        json={"email": viewer.email, "role": "viewer", "expires_at": moment},
        headers=owner.headers,
    )
    invalid(response.status_code, response.json())
    assert response.json()["errors"][0]["loc"] == ["body", "expires_at"]


async def test_every_route_goes_through_the_boundary(relay_config: RelayConfig) -> None:
    app = create_app(relay_config)
    routers = [m.router for m in ROUTE_MODULES]
    routes = [r for r in app.router.routes if isinstance(r, APIRoute)]
    routes += [r for router in routers for r in router.routes if isinstance(r, APIRoute)]
    assert [r.path for r in routes if not isinstance(r, BoundaryRoute)] == []
    operations = sum(len(ops) for ops in app.openapi()["paths"].values())
    assert sum(len(r.methods or ()) for r in routes) == operations
