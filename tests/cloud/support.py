"""A small client for the relay's REST API and a seeded two-tenant world for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from bellhop_cloud import hotels
from bellhop_cloud.auth.keys import b64url, raw_public_bytes
from bellhop_cloud.db.schema import alerts
from bellhop_cloud.enrolment import ENROLMENT_CONTEXT
from bellhop_cloud.relay import Relay
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PASSWORD = "correct horse battery"


@dataclass
class Account:
    email: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def expect(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (response.status_code, response.text)
    return response.json() if response.content else None


class Api:
    def __init__(self, http: httpx.AsyncClient, relay: Relay, test_name: str) -> None:
        self.http = http
        self.relay = relay
        self.test_name = test_name

    def email(self, who: str) -> str:
        return f"{who}.{self.test_name}@example.com"

    async def account(self, who: str, password: str = PASSWORD) -> Account:
        email = self.email(who)
        user = expect(
            await self.http.post(
                "/v1/auth/register",
                json={"email": email, "password": password, "display_name": who},
            ),
            201,
        )
        tokens = await self.login(email, password)
        return Account(email, user["id"], tokens["access_token"], tokens["refresh_token"])

    async def login(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        body = expect(
            await self.http.post("/v1/auth/login", json={"email": email, "password": password}),
            200,
        )
        assert isinstance(body, dict)
        return body

    async def org(self, owner: Account, name: str) -> str:
        body = expect(
            await self.http.post("/v1/orgs", json={"name": name}, headers=owner.headers), 201
        )
        return str(body["id"])

    async def hotel(self, admin: Account, org_id: str, name: str) -> str:
        body = expect(
            await self.http.post(
                f"/v1/orgs/{org_id}/hotels",
                json={"name": name, "timezone": "Europe/Lisbon"},
                headers=admin.headers,
            ),
            201,
        )
        return str(body["id"])

    async def grant(
        self, granter: Account, org_id: str, member: Account, role: str, **extra: Any
    ) -> dict[str, Any]:
        body = expect(
            await self.http.post(
                f"/v1/orgs/{org_id}/grants",
                json={"email": member.email, "role": role, **extra},
                headers=granter.headers,
            ),
            201,
        )
        assert isinstance(body, dict)
        return body

    async def seed_devices(
        self, hotel_id: str, count: int, *, rooms: int = 10, last_seen: datetime | None = None
    ) -> None:
        """Fill rooms and devices through the store, as the bridge will."""
        seen = last_seen or datetime.now(UTC)
        async with self.relay.store.write() as conn:
            await hotels.upsert_rooms(
                conn,
                hotel_id,
                [hotels.Room(f"r{n:03d}", f"Room {n}", n // 100, seen) for n in range(rooms)],
            )
            await hotels.upsert_devices(
                conn,
                hotel_id,
                [
                    hotels.Device(
                        device_id=f"dev-{n:04d}",
                        kind="thermostat",
                        room_id=f"r{n % rooms:03d}",
                        firmware="1.0.0",
                        online=True,
                        state={"setpoint": 21.5, "n": n},
                        last_seen=seen,
                    )
                    for n in range(count)
                ],
            )

    async def raise_alert(self, hotel_id: str, alert_id: str, device_id: str = "dev-0000") -> None:
        """An alert raised on a seeded device (`seed_devices`), as the bridge stores one."""
        async with self.relay.store.write() as conn:
            await conn.execute(
                alerts.insert().values(
                    hotel_id=hotel_id,
                    alert_id=alert_id,
                    kind="breach",
                    severity="critical",
                    state="raised",
                    device_id=device_id,
                    room_id="r000",
                    message="too warm",
                    raised_at=int(datetime.now(UTC).timestamp() * 1000),
                )
            )

    async def enrolment_token(self, admin: Account, hotel_id: str) -> str:
        body = expect(
            await self.http.post(
                f"/v1/hotels/{hotel_id}/enrolment-tokens", json={}, headers=admin.headers
            ),
            201,
        )
        return str(body["token"])

    async def enrol(
        self, token: str, key: Ed25519PrivateKey | None = None, name: str = "gw"
    ) -> httpx.Response:
        key = key or Ed25519PrivateKey.generate()
        return await self.http.post(
            "/v1/gateways/enrol",
            json={
                "token": token,
                "public_key": b64url(raw_public_bytes(key.public_key())),
                "signature": b64url(key.sign(ENROLMENT_CONTEXT + token.encode())),
                "name": name,
            },
        )


@dataclass
class World:
    """Two tenants. `victim` data must never reach anyone outside its organisation."""

    owner: Account
    viewer: Account
    org_id: str
    hotel_id: str
    gateway_id: str
    grant_id: str
    outsider: Account
    other_org_id: str
    other_hotel_id: str
    command_id: str
    secrets: list[str] = field(default_factory=list)


async def build_world(api: Api) -> World:
    owner = await api.account("owner")
    viewer = await api.account("viewer")
    org_name = f"Victim Org {api.test_name}"
    org_id = await api.org(owner, org_name)
    hotel_name = f"Victim Hotel {api.test_name}"
    hotel_id = await api.hotel(owner, org_id, hotel_name)
    grant = await api.grant(owner, org_id, viewer, "viewer")
    await api.seed_devices(hotel_id, 5, rooms=2)
    token = await api.enrolment_token(owner, hotel_id)
    gateway = expect(await api.enrol(token), 201)
    # A command queued for the hotel's gateway (which is away): something to read back.
    command = await api.http.post(
        f"/v1/hotels/{hotel_id}/devices/dev-0002/commands",
        json={
            "name": "set_light",
            "params": {"on": True},
            "command_id": "cmd-0001",
            "mode": "queue",
        },
        headers=owner.headers,
    )
    expect(command, 202)
    outsider = await api.account("outsider")
    other_org_id = await api.org(outsider, f"Other Org {api.test_name}")
    other_hotel_id = await api.hotel(outsider, other_org_id, f"Other Hotel {api.test_name}")
    return World(
        owner=owner,
        viewer=viewer,
        org_id=org_id,
        hotel_id=hotel_id,
        gateway_id=gateway["id"],
        grant_id=grant["id"],
        outsider=outsider,
        other_org_id=other_org_id,
        other_hotel_id=other_hotel_id,
        command_id="cmd-0001",
        secrets=[org_name, hotel_name, "dev-0001", "setpoint", viewer.email, owner.email],
    )


def in_a_week() -> str:
    return (datetime.now(UTC) + timedelta(days=7)).isoformat()
