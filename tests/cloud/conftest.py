"""Fixtures of the cloud relay tests: a relay on SQLite and on PostgreSQL.

Every test that asks for `relay` (or `api`) runs twice, once per store. The
PostgreSQL run uses one database per test session (created here, dropped at
the end) and one schema per test. With CI=true a missing PostgreSQL fails the
run; elsewhere those tests skip and say why.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
from bellhop_cloud.app import create_app
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.relay import Relay

from tests.cloud.bridging import Bridge, CloudHotel, EdgeSite, bridge_server, cloud_hotel
from tests.cloud.support import Api
from tests.support.mosquitto import MosquittoBroker
from tests.support.postgres import admin, require_postgres, url

# Cheap hashing keeps the suite fast; production defaults stay RFC 9106 strength.
FAST_PASSWORDS: dict[str, Any] = {
    "password_time_cost": 1,
    "password_memory_kib": 8,
    "password_parallelism": 1,
}


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of our own for the whole session, dropped at the end."""
    if os.environ.get("BELLHOP_TEST_NO_POSTGRES") == "1":
        require_postgres("scripts/check could not start it (BELLHOP_TEST_NO_POSTGRES=1)")
    name = f"bellhop_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        require_postgres(f"{type(exc).__name__}: {exc}")
        raise
    try:
        yield name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """The store to run on and, for PostgreSQL, the session's database."""
    if request.param == "sqlite":
        return "sqlite", None
    # Requested here, outside any event loop, because it runs asyncio itself.
    return "postgres", request.getfixturevalue("postgres_database")


@pytest.fixture
async def relay_config(
    backend: tuple[str, str | None], tmp_path: Path, test_name: str
) -> RelayConfig:
    common: dict[str, Any] = {
        "signing_key_path": tmp_path / "signing-key.pem",
        # The notification tests' webhook and SMTP receivers listen on loopback.
        "notify_private_targets": ("127.0.0.0/8",),
        **FAST_PASSWORDS,
    }
    _, database = backend
    if database is None:
        return RelayConfig(database_url=f"sqlite:///{tmp_path / 'relay.db'}", **common)
    schema = "t_" + hashlib.sha256(test_name.encode()).hexdigest()[:16]
    conn = await asyncpg.connect(url(database), timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return RelayConfig(database_url=url(database), database_schema=schema, db_pool_size=4, **common)


@pytest.fixture
def relay_settings() -> dict[str, Any]:
    """Settings a test module gives its relay over `relay_config`'s: override this fixture."""
    return {}


@pytest.fixture
async def relay(relay_config: RelayConfig, relay_settings: dict[str, Any]) -> AsyncIterator[Relay]:
    opened = await Relay.open(relay_config.model_copy(update=relay_settings))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def client(relay: Relay) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(relay.config, relay=relay)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.10", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as http:
        yield http


@pytest.fixture
def api(client: httpx.AsyncClient, relay: Relay, test_name: str) -> Api:
    return Api(client, relay, test_name)


# -- the bridge tests' hotel: enrolled in the relay, its site (broker, config), the endpoint --
@pytest.fixture
async def hotel(api: Api) -> CloudHotel:
    return await cloud_hotel(api)


@pytest.fixture
def site(tmp_path: Path, mosquitto: MosquittoBroker, hotel: CloudHotel) -> EdgeSite:
    return EdgeSite(tmp_path, mosquitto, hotel)


@pytest.fixture
async def bridge(hotel: CloudHotel) -> AsyncIterator[Bridge]:
    async with bridge_server(hotel.api.relay) as bridge:
        yield bridge
