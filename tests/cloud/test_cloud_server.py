"""End to end: `bellhop cloud run` as a real process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.relay import Relay

from tests.cloud.conftest import FAST_PASSWORDS
from tests.cloud.support import Api
from tests.support.mosquitto import free_port
from tests.support.waiting import NotWithin, until

STARTUP_S = 20.0


async def wait_ready(base: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=1.0) as http:

        async def ready() -> bool:
            if process.returncode is not None:
                pytest.fail(f"relay exited with {process.returncode}")
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await until(ready, STARTUP_S, "the relay ready", every=0.1)
        except NotWithin:
            pytest.fail("relay did not become ready")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[str, Path, asyncio.subprocess.Process]]:
    port = free_port()
    config = tmp_path / "relay.toml"
    settings = {
        "database_url": f"sqlite:///{tmp_path / 'relay.db'}",
        "signing_key_path": str(tmp_path / "key.pem"),
        "port": port,
        **FAST_PASSWORDS,
    }
    config.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in settings.items()))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bellhop_cli.main",
        "cloud",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}", tmp_path, process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_real_server_serves_signs_and_stops_cleanly(
    served: tuple[str, Path, asyncio.subprocess.Process], test_name: str
) -> None:
    base, workdir, process = served
    async with httpx.AsyncClient(base_url=base, timeout=5.0) as http:
        seeder = await Relay.open(
            RelayConfig(
                database_url=f"sqlite:///{workdir / 'relay.db'}",
                signing_key_path=workdir / "key.pem",
                migrate_on_start=False,
                **FAST_PASSWORDS,
            )
        )
        try:
            api = Api(http, seeder, test_name)
            owner = await api.account("owner")
            org_id = await api.org(owner, "Seaside")
            hotel_id = await api.hotel(owner, org_id, "Lisbon")
            await api.seed_devices(hotel_id, 120)
            page = await http.get(f"/v1/hotels/{hotel_id}/devices", headers=owner.headers)
            assert page.status_code == 200
            assert len(page.json()["items"]) == 100
            token = await api.enrolment_token(owner, hotel_id)
            assert (await api.enrol(token)).status_code == 201
        finally:
            await seeder.close()
        jwks = (await http.get("/.well-known/jwks.json")).json()
        assert len(jwks["keys"]) == 1
    process.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status tells why.
    assert process.returncode in {0, -signal.SIGTERM}
    assert b"Application shutdown complete" in stderr
    assert b"PRIVATE KEY" not in stderr
    assert (workdir / "key.pem").stat().st_mode & 0o077 == 0


async def test_bad_config_exits_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("access_token_ttl_s = 99999\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bellhop_cli.main",
        "cloud",
        "run",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=15)
    assert process.returncode == 2
    assert b"access_token_ttl_s" in stderr
    assert b"Traceback" not in stderr
