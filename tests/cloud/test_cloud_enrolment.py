"""Gateway enrolment: one-time tokens, proof of key possession, revocation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bellhop_cloud.auth.keys import b64url, raw_public_bytes
from bellhop_cloud.db.schema import enrolment_tokens
from bellhop_cloud.enrolment import is_gateway_active, load_identity
from bellhop_cloud.relay import Relay
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.cloud.support import Api, expect


async def _hotel_with_admin(api: Api) -> tuple[dict[str, str], str, str]:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    return owner.headers, org_id, hotel_id


async def test_gateway_enrols_once_and_the_bridge_can_verify_it(api: Api, relay: Relay) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    token = await api.enrolment_token(owner, hotel_id)
    key = Ed25519PrivateKey.generate()
    gateway = expect(await api.enrol(token, key, name="lisbon-gw"), 201)
    assert gateway["hotel_id"] == hotel_id
    assert gateway["org_id"] == org_id
    assert gateway["public_key"] == b64url(raw_public_bytes(key.public_key()))
    again = await api.enrol(token)
    assert again.status_code == 401
    assert again.json()["code"] == "enrolment_token_invalid"

    identity = await load_identity(relay.store, gateway["id"])
    assert identity is not None
    assert identity.hotel_id == hotel_id
    assert identity.verify(b"challenge-123", key.sign(b"challenge-123"))
    assert not identity.verify(b"challenge-123", Ed25519PrivateKey.generate().sign(b"x"))
    assert await is_gateway_active(relay.store, gateway["id"])
    listed = expect(
        await api.http.get(f"/v1/hotels/{hotel_id}/gateways", headers=owner.headers), 200
    )
    assert [g["id"] for g in listed] == [gateway["id"]]


async def test_racing_gateways_cannot_share_a_token(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    token = await api.enrolment_token(owner, hotel_id)
    results = await asyncio.gather(*(api.enrol(token) for _ in range(4)))
    assert sorted(r.status_code for r in results) == [201, 401, 401, 401]


async def test_revocation_cuts_the_gateway_off(api: Api, relay: Relay) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    gateway = expect(await api.enrol(await api.enrolment_token(owner, hotel_id)), 201)
    url = f"/v1/hotels/{hotel_id}/gateways/{gateway['id']}/revoke"
    revoked = expect(await api.http.post(url, headers=owner.headers), 200)
    assert revoked["active"] is False
    assert revoked["revoked_at"] is not None
    assert not await is_gateway_active(relay.store, gateway["id"])
    assert expect(await api.http.post(url, headers=owner.headers), 200)["active"] is False
    assert not await is_gateway_active(relay.store, "gw_unknown")
    audit = expect(await api.http.get(f"/v1/orgs/{org_id}/audit", headers=owner.headers), 200)
    assert [e["action"] for e in audit["items"][:3]] == [
        "gateway.revoked",
        "gateway.enrolled",
        "enrolment_token.created",
    ]


async def test_enrolment_needs_proof_of_the_private_key(api: Api) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    token = await api.enrolment_token(owner, hotel_id)
    key = Ed25519PrivateKey.generate()
    impostor = Ed25519PrivateKey.generate()
    response = await api.http.post(
        "/v1/gateways/enrol",
        json={
            "token": token,
            "public_key": b64url(raw_public_bytes(key.public_key())),
            "signature": b64url(impostor.sign(b"bellhop-enrol-v1\x00" + token.encode())),
            "name": "gw",
        },
    )
    assert response.status_code == 422
    assert response.json()["code"] == "bad_signature"
    garbage = await api.http.post(
        "/v1/gateways/enrol",
        json={"token": token, "public_key": "!!", "signature": "??", "name": "gw"},
    )
    assert garbage.status_code == 422
    # The failed attempts did not use the token up.
    assert (await api.enrol(token)).status_code == 201


async def test_expired_enrolment_token_is_refused(api: Api, relay: Relay) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    token = await api.enrolment_token(owner, hotel_id)
    async with relay.store.write() as conn:
        await conn.execute(
            enrolment_tokens.update().values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert (await api.enrol(token)).status_code == 401


async def test_no_secret_travels_in_a_url(api: Api) -> None:
    schema = (await api.http.get("/openapi.json")).json()
    for path, ops in schema["paths"].items():
        assert "token" not in path.replace("enrolment-tokens", "")
        for op in ops.values():
            for parameter in op.get("parameters", []):
                assert parameter["in"] != "query" or not any(
                    word in parameter["name"] for word in ("token", "password", "secret", "key")
                ), (path, parameter["name"])


async def test_staff_cannot_create_enrolment_tokens(api: Api) -> None:
    owner = await api.account("owner")
    staff = await api.account("staff")
    org_id = await api.org(owner, "Seaside")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    await api.grant(owner, org_id, staff, "manager", hotel_id=hotel_id)
    response = await api.http.post(
        f"/v1/hotels/{hotel_id}/enrolment-tokens", json={}, headers=staff.headers
    )
    assert response.status_code == 403
