"""Problem details, OpenAPI, health, readiness and metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from bellhop_cloud.app import create_app
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.relay import Relay

from tests.cloud.conftest import FAST_PASSWORDS
from tests.cloud.support import Api


async def test_malformed_json_is_a_problem_not_a_crash(api: Api) -> None:
    response = await api.http.post(
        "/v1/auth/login", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["type"] == "urn:bellhop:problem:invalid_request"
    assert body["status"] == 422


async def test_unknown_fields_and_routes_and_methods(api: Api) -> None:
    extra = await api.http.post(
        "/v1/auth/login", json={"email": "a@example.com", "password": "x", "admin": True}
    )
    assert extra.status_code == 422
    missing = await api.http.get("/v1/does-not-exist")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    wrong_method = await api.http.delete("/v1/auth/login")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")


async def test_problems_are_counted_by_code(api: Api) -> None:
    await api.http.get("/v1/me")
    await api.http.get("/v1/me", headers={"Authorization": "Bearer junk"})
    metrics = (await api.http.get("/metrics")).text
    assert 'bellhop_cloud_problems_total{code="unauthenticated"} 1.0' in metrics
    assert 'bellhop_cloud_auth_failures_total{reason="invalid_token"} 1.0' in metrics
    assert (
        'bellhop_cloud_http_requests_total{method="GET",route="/v1/me",status="401"} 2.0' in metrics
    )


async def test_openapi_documents_every_error_as_a_problem(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    assert "Problem" in schema["components"]["schemas"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            where = f"{method} {path}"
            assert op.get("summary"), where
            if op["x-bellhop-access"]["audience"] != "public":
                assert op.get("security") == [{"bearer": []}], where
                assert "401" in op["responses"], where
            assert {"422", "500"} <= set(op["responses"]), where
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], where
                    ref = response["content"]["application/problem+json"]["schema"]["$ref"]
                    assert ref.endswith("/Problem"), where
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.http.get("/healthz")).json() == {"status": "ok"}
    assert (await api.http.get("/readyz")).json() == {"status": "ready", "database": "ok"}


async def test_readiness_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    config = RelayConfig(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        signing_key_path=tmp_path / "key.pem",
        migrate_on_start=False,
        **FAST_PASSWORDS,
    )
    relay = await Relay.open(config)
    try:
        transport = httpx.ASGITransport(app=create_app(config, relay=relay))
        async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as http:
            assert (await http.get("/healthz")).status_code == 200
            response = await http.get("/readyz")
        assert response.status_code == 503
        assert response.json()["code"] == "unavailable"
    finally:
        await relay.close()


@pytest.mark.parametrize("size", [1, 64])
async def test_oversized_fields_are_refused(api: Api, size: int) -> None:
    response = await api.http.post(
        "/v1/auth/login", json={"email": "a@example.com", "password": "p" * (300 * size)}
    )
    assert response.status_code == 422


async def test_every_json_answer_has_a_documented_schema(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            ok = [s for s in op["responses"] if s.startswith("2")]
            assert ok, f"{method} {path}"
            for status in ok:
                content = op["responses"][status].get("content", {})
                if status == "204" or path == "/metrics" or method == "head":
                    continue
                assert content["application/json"]["schema"], f"{method} {path}"


async def test_a_405_lists_every_method_of_the_path(api: Api) -> None:
    response = await api.http.put("/v1/me")
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")
    assert response.headers["allow"] == "GET, PATCH"
    assert (await api.http.delete("/healthz")).headers["allow"] == "GET, HEAD"
