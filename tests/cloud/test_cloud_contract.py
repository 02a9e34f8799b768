"""The relay keeps the contract its OpenAPI document states.

schemathesis generates requests for every operation from the document,
valid and invalid ones, sends them to the relay under a real uvicorn server
(SQLite) as a signed-in user, and runs all its checks on each answer: no
server error, and no status, content type, header or body the document
does not declare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from bellhop_cloud.app import create_app
from bellhop_cloud.config import RelayConfig
from schemathesis.config import SchemathesisConfig

from tests.cloud.conftest import FAST_PASSWORDS
from tests.cloud.serving import serving
from tests.cloud.support import PASSWORD, expect

# Built as the server builds it: the document is the app's own (checked below).
# Loaded eagerly: schemathesis's lazy fixture loader does not support this pytest.
DOCUMENT = create_app(RelayConfig()).openapi()
EXAMPLES_PER_OPERATION = 25
# Every check runs on every operation. positive_data_acceptance wants input the
# document allows to be accepted; these operations also refuse, as a documented
# 422, input that breaks a rule no JSON Schema can state. Nowhere else is a 422
# to valid input allowed.
RULES_BEYOND_THE_SCHEMA = {
    "POST /v1/auth/register": "an e-mail address that can receive mail (no .test, .invalid)",
    "POST /v1/orgs/{org_id}/grants": "the same; rooms need a hotel; an expiry in the future",
    "POST /v1/orgs/{org_id}/hotels": "a time zone of the IANA database",
    "POST /v1/gateways/enrol": "base64url keys, and a signature that proves the key",
    "GET /v1/hotels/{hotel_id}/rooms": "a cursor this API issued",
    "GET /v1/hotels/{hotel_id}/devices": "a cursor this API issued",
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-name": name,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
            for name in RULES_BEYOND_THE_SCHEMA
        ]
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


class Served:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir: Path = tmp_path_factory.mktemp("contract")
    config = RelayConfig(
        database_url=f"sqlite:///{workdir / 'relay.db'}",
        signing_key_path=workdir / "key.pem",
        **FAST_PASSWORDS,
    )
    with serving(config) as base, httpx.Client(base_url=base, timeout=10) as http:
        assert expect(http.get("/openapi.json"), 200) == DOCUMENT
        user = {"email": "ana@example.com", "password": PASSWORD, "display_name": "Ana"}
        expect(http.post("/v1/auth/register", json=user), 201)
        login = {"email": user["email"], "password": PASSWORD}
        tokens = expect(http.post("/v1/auth/login", json=login), 200)
        auth = {"Authorization": f"Bearer {tokens['access_token']}"}
        org = expect(http.post("/v1/orgs", json={"name": "Seaside"}, headers=auth), 201)
        hotel = {"name": "Lisbon", "timezone": "Europe/Lisbon"}
        expect(http.post(f"/v1/orgs/{org['id']}/hotels", json=hotel, headers=auth), 201)
        yield Served(base, tokens["access_token"])


@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same requests on every run: a failure here is reproducible
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow, hypothesis.HealthCheck.filter_too_much],
)
def test_every_answer_is_documented(case: schemathesis.Case[Any], served: Served) -> None:
    case.call_and_validate(base_url=served.base, headers=served.headers)


def test_the_exceptions_name_real_operations() -> None:
    names = {f"{m.upper()} {p}" for p, ops in DOCUMENT["paths"].items() for m in ops}
    assert set(RULES_BEYOND_THE_SCHEMA) <= names
    assert "5xx" not in ACCEPTED
