"""One login on both paths: the relay's access token works on the hotel's LAN API.

Real processes: `bellhop cloud run` on SQLite, Mosquitto, and `bellhop edge run`
enrolled with the real `bellhop edge enrol`. People log in on the relay's REST
API and call the gateway's gRPC API with the access token they got. The gateway
verifies it offline against the keys its bridge cached, so it keeps working
with the relay stopped; tokens for another hotel or organisation, too low a
role, a room-limited grant, an expired or tampered token are refused, each
saying why.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import grpc
import jwt
import pytest
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_edge.bridge import trust
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.duration_pb2 import Duration

from tests.support import waiting
from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import MosquittoBroker
from tests.support.relay_process import (
    PASSWORD,
    RelayProcess,
    Tenant,
    bytecode_cache,
    enrol_gateway,
)

DEVICES: Final = {"r101-thermostat": "thermostat"}
BRIDGE: Final = """
[bridge]
reconnect_min_s = 0.05
reconnect_max_s = 0.5
connect_timeout_s = 2
"""
RPC_TIMEOUT_S: Final = 10.0


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def person(relay: RelayProcess, tenant: Tenant, name: str, **grant: Any) -> str:
    """A registered account, granted `grant` in the tenant's organisation when given (by
    its owner); returns the access token it logs in with."""
    email = f"{name}.{time.monotonic_ns()}@example.com"
    with relay.http() as http:
        answer = http.post(
            "/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": name}
        )
        assert answer.status_code == 201, answer.text
        if grant:
            answer = http.post(
                f"/v1/orgs/{tenant.org_id}/grants",
                json={"email": email, **grant},
                headers=tenant.headers,
            )
            assert answer.status_code == 201, answer.text
        answer = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def subject(token: str) -> str:
    return str(jwt.decode(token, options={"verify_signature": False})["sub"])


@dataclass
class Lan:
    stub: lan_pb2_grpc.LanServiceAsyncStub

    async def rooms(self, token: str) -> list[str]:
        answer = await self.stub.ListRooms(
            lan_pb2.ListRoomsRequest(), metadata=_bearer(token), timeout=RPC_TIMEOUT_S
        )
        return [room.room_id for room in answer.rooms]

    async def status(self, token: str) -> lan_pb2.GetGatewayStatusResponse:
        answer: lan_pb2.GetGatewayStatusResponse = await self.stub.GetGatewayStatus(
            lan_pb2.GetGatewayStatusRequest(), metadata=_bearer(token), timeout=RPC_TIMEOUT_S
        )
        return answer

    async def command(self, token: str, command_id: str) -> None:
        request = lan_pb2.SendCommandRequest(
            device_id="r101-thermostat",
            name="set_setpoint",
            command_id=command_id,
            timeout=Duration(nanos=200_000_000),
        )
        request.params.update({"setpoint_c": 21.5})
        await self.stub.SendCommand(request, metadata=_bearer(token), timeout=RPC_TIMEOUT_S)

    async def refused(self, token: str, code: grpc.StatusCode, reason: str) -> None:
        """ListRooms (or, for a role that may read, SendCommand) fails with `code` naming `reason`."""
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await self.rooms(token)
        assert refused.value.code() is code, refused.value.details()
        assert reason in (refused.value.details() or ""), refused.value.details()


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Site:
    relay: RelayProcess
    tenant: Tenant
    gateway: EdgeProcess
    cache: Path  # where the gateway keeps the relay's keys
    lan: Lan


@contextlib.asynccontextmanager
async def site(tmp_path: Path, mosquitto: MosquittoBroker) -> AsyncIterator[Site]:
    """A relay with a hotel, its gateway enrolled, running and bridged (keys cached)."""
    relay = RelayProcess(tmp_path / "relay")
    gateway: EdgeProcess | None = None
    try:
        await asyncio.to_thread(relay.start)
        tenant = relay.tenant()
        workdir = tmp_path / "gateway"
        workdir.mkdir()
        config = workdir / "edge.toml"
        port = write_config(
            config,
            hotel_id=tenant.hotel_id,
            mosquitto=mosquitto,
            gateway=mosquitto.add_gateway(tenant.hotel_id),
            devices=dict(DEVICES),
            extra=BRIDGE,
        )
        mosquitto.add_devices(tenant.hotel_id, list(DEVICES))
        mosquitto.reload()
        cache = workdir / "edge" / "bridge" / trust.FILE_NAME
        await asyncio.to_thread(enrol_gateway, config, relay, tenant.enrolment_token())
        assert not cache.exists()  # enrolment alone brings no keys: the bridge does
        gateway = EdgeProcess(config)
        gateway.start()
        await until(cache.exists, 30, "the relay's keys cached by the gateway")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            lan = Lan(lan_pb2_grpc.LanServiceStub(channel))
            yield Site(relay, tenant, gateway, cache, lan)
    finally:
        try:
            if gateway is not None and gateway.proc is not None:
                gateway.stop(signal.SIGKILL)
        finally:
            relay.close()


def relay_signed(relay: RelayProcess, token: str, **changes: Any) -> str:
    """`token` with `changes` to its claims, signed with the relay's own key (what the relay
    would issue, e.g. one that has expired by now)."""
    pem = (relay.workdir / "signing-key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    header = jwt.get_unverified_header(token)
    claims = {**jwt.decode(token, options={"verify_signature": False}), **changes}
    return jwt.encode(claims, key, algorithm="EdDSA", headers=header)


def tampered(token: str) -> str:
    """The token with its roles raised to owner of every hotel, signature as it was."""
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["org_roles"] = dict.fromkeys(claims["org_roles"] or ["org"], "owner")
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{forged}.{signature}"


def fresh_login(relay: RelayProcess, tenant: Tenant) -> str:
    """A new access token of the tenant's owner: it carries the grants made since the
    owner's first login (its organisation-wide owner grant among them)."""
    with relay.http() as http:
        me = http.get("/v1/me", headers=tenant.headers).json()
        tokens = http.post("/v1/auth/login", json={"email": me["email"], "password": PASSWORD})
    token: str = tokens.json()["access_token"]
    return token


def requested_by(gateway: EdgeProcess, command_id: str) -> str | None:
    db = sqlite3.connect(f"file:{gateway.database}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute(
            "SELECT requested_by FROM commands WHERE command_id = ?", (command_id,)
        ).fetchone()
    except sqlite3.OperationalError:  # the table is not there yet
        return None
    finally:
        db.close()
    return None if row is None else str(row[0])


@pytest.mark.timeout(180)
async def test_a_relay_login_works_on_the_lan_and_keeps_working_with_the_relay_stopped(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    async with site(tmp_path, mosquitto) as here:
        relay, tenant, gateway, cache, lan = (
            here.relay,
            here.tenant,
            here.gateway,
            here.cache,
            here.lan,
        )
        doc = trust.read(cache)
        assert doc is not None
        assert doc["org_id"] == tenant.org_id
        manager = person(relay, tenant, "manager", role="manager", hotel_id=tenant.hotel_id)
        # The owner's grant is organisation-wide: org_roles, not hotel_roles.
        owner = fresh_login(relay, tenant)
        assert jwt.decode(owner, options={"verify_signature": False})["hotel_roles"] == {}

        assert await lan.rooms(manager) == ["101"]
        assert (await lan.status(manager)).cloud_bridge == "open"
        assert await lan.rooms(owner) == ["101"]
        # The gateway's history says who sent a command: the cloud account's id.
        await lan.command(manager, "lan-c1")
        await until(lambda: requested_by(gateway, "lan-c1") == subject(manager), 10, "lan-c1")

        # The relay goes away: verification is offline, the cached keys suffice.
        assert relay.stop() == 0

        async def bridge_down() -> bool:
            return (await lan.status(manager)).cloud_bridge != "open"

        await waiting.until(bridge_down, 30, "the gateway says its bridge is not open", every=0.05)
        assert await lan.rooms(manager) == ["101"]
        assert await lan.rooms(owner) == ["101"]
        await lan.command(manager, "lan-c2")
        await until(lambda: requested_by(gateway, "lan-c2") == subject(manager), 10, "lan-c2")
        # A restart with the relay still away: the keys are on disk.
        assert gateway.stop() == 0
        gateway.start()
        answer = await lan.stub.ListRooms(
            lan_pb2.ListRoomsRequest(),
            metadata=_bearer(manager),
            timeout=30,
            wait_for_ready=True,
        )
        assert [room.room_id for room in answer.rooms] == ["101"]


@pytest.mark.timeout(180)
async def test_tokens_that_give_no_right_here_are_refused_saying_why(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    async with site(tmp_path, mosquitto) as here:
        relay, tenant, lan = here.relay, here.tenant, here.lan
        elsewhere = tenant.another_hotel()
        other_hotel = person(
            relay, tenant, "other-hotel", role="owner", hotel_id=elsewhere.hotel_id
        )
        other_org = fresh_login(relay, relay.tenant("other-org"))  # owner of its own org
        viewer = person(relay, tenant, "viewer", role="viewer", hotel_id=tenant.hotel_id)
        rooms_only = person(
            relay, tenant, "rooms-only", role="manager", hotel_id=tenant.hotel_id, rooms=["101"]
        )
        manager = person(relay, tenant, "manager", role="manager", hotel_id=tenant.hotel_id)
        denied = grpc.StatusCode.PERMISSION_DENIED
        unauthenticated = grpc.StatusCode.UNAUTHENTICATED

        await lan.refused(other_hotel, denied, "no role on this hotel")
        await lan.refused(other_org, denied, "no role on this hotel")
        await lan.refused(rooms_only, denied, "room-limited grants do not count on the LAN")
        # A viewer reads, and may not command.
        assert await lan.rooms(viewer) == ["101"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await lan.command(viewer, "viewer-c1")
        assert refused.value.code() is denied
        assert "staff" in (refused.value.details() or "")
        # Expired, and tampered with.
        expired = relay_signed(
            relay, manager, iat=int(time.time()) - 700, exp=int(time.time()) - 100
        )
        await lan.refused(expired, unauthenticated, "expired")
        await lan.refused(tampered(manager), unauthenticated, "bad signature")
        # A token of another relay (its own key, same kid) is not ours.
        forged = jwt.encode(
            jwt.decode(manager, options={"verify_signature": False}),
            Ed25519PrivateKey.generate(),
            algorithm="EdDSA",
            headers=jwt.get_unverified_header(manager),
        )
        await lan.refused(forged, unauthenticated, "bad signature")
        # The same manager's real token is fine.
        assert await lan.rooms(manager) == ["101"]
