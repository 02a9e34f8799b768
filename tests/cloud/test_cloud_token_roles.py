"""The roles an access token carries for gateways (auth/roles.py): pure rules first,
then what login and refresh put in real tokens, and that the relay's own checks
are unchanged by them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from bellhop_cloud.auth.keys import SigningKey
from bellhop_cloud.auth.roles import MAX_ENTRIES, TokenRoles, token_roles
from bellhop_cloud.auth.tokens import EDGE_AUDIENCE, AccessTokens
from bellhop_cloud.rbac.permissions import Grant, Role
from bellhop_cloud.relay import Relay

from tests.cloud.support import Api, expect

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def grant(
    role: str,
    org: str = "org_a",
    hotel: str | None = None,
    rooms: set[str] | None = None,
    expires_in_s: float | None = None,
) -> Grant:
    expires = None if expires_in_s is None else NOW + timedelta(seconds=expires_in_s)
    return Grant(
        f"g-{role}-{org}-{hotel}",
        org,
        "usr_1",
        Role(role),
        hotel_id=hotel,
        rooms=frozenset(rooms) if rooms is not None else None,
        expires_at=expires,
    )


CASES: list[tuple[str, list[Grant], dict[str, str], dict[str, str]]] = [
    ("no grants", [], {}, {}),
    ("a hotel grant", [grant("manager", hotel="h1")], {"h1": "manager"}, {}),
    ("an org grant", [grant("viewer")], {}, {"org_a": "viewer"}),
    ("the best of two on one hotel", [grant("staff", hotel="h1"), grant("admin", hotel="h1")],
     {"h1": "admin"}, {}),
    ("a hotel entry no better than its org's is left out",
     [grant("manager"), grant("staff", hotel="h1"), grant("manager", hotel="h2")],
     {}, {"org_a": "manager"}),
    ("a hotel entry better than its org's stays",
     [grant("viewer"), grant("manager", hotel="h1")], {"h1": "manager"}, {"org_a": "viewer"}),
    ("another org's role does not cover this org's hotel",
     [grant("owner", org="org_b"), grant("staff", hotel="h1")],
     {"h1": "staff"}, {"org_b": "owner"}),
    ("room-limited grants are left out", [grant("owner", hotel="h1", rooms={"101"})], {}, {}),
    ("room-limited beside hotel-wide: the hotel-wide one",
     [grant("owner", hotel="h1", rooms={"101"}), grant("viewer", hotel="h1")],
     {"h1": "viewer"}, {}),
    ("expired grants are left out",
     [grant("owner", expires_in_s=-1), grant("staff", hotel="h1", expires_in_s=0)], {}, {}),
    ("a grant still running counts", [grant("staff", hotel="h1", expires_in_s=60)],
     {"h1": "staff"}, {}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("grants", "hotel_roles", "org_roles"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_roles_from_grants(
    grants: list[Grant], hotel_roles: dict[str, str], org_roles: dict[str, str]
) -> None:
    roles = token_roles(grants, NOW)
    assert (dict(roles.hotel_roles), dict(roles.org_roles)) == (hotel_roles, org_roles)
    assert not roles.truncated
    assert "roles_truncated" not in roles.claims()


def test_the_entries_are_bounded_orgs_first_then_the_highest_hotel_roles() -> None:
    grants = [grant("viewer", org="org_z")]
    grants += [grant("staff", org="org_b", hotel=f"h{n:03}") for n in range(MAX_ENTRIES + 10)]
    grants += [grant("admin", org="org_b", hotel="h999")]
    roles = token_roles(grants, NOW)
    assert roles.truncated
    assert roles.claims()["roles_truncated"] is True
    assert dict(roles.org_roles) == {"org_z": "viewer"}
    assert len(roles.hotel_roles) == MAX_ENTRIES - 1
    assert roles.hotel_roles["h999"] == "admin"  # the highest role first, then by id
    assert "h000" in roles.hotel_roles
    assert f"h{MAX_ENTRIES + 9:03}" not in roles.hotel_roles


def test_issued_tokens_carry_both_audiences_and_the_roles() -> None:
    tokens = AccessTokens(SigningKey.generate(), issuer="iss", audience="aud", ttl_s=300)
    roles = TokenRoles(hotel_roles={"h1": "staff"}, org_roles={"org_a": "viewer"})
    issued = tokens.issue("usr_1", "fam_1", roles=roles)
    claims: dict[str, Any] = jwt.decode(
        issued.token, tokens.key.public_key, algorithms=["EdDSA"], audience=EDGE_AUDIENCE
    )
    assert claims["aud"] == ["aud", EDGE_AUDIENCE]
    assert claims["hotel_roles"] == {"h1": "staff"}
    assert claims["org_roles"] == {"org_a": "viewer"}
    # The relay's own check is unchanged: its audience is one of the two.
    assert tokens.verify(issued.token).user_id == "usr_1"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(issued.token, tokens.key.public_key, algorithms=["EdDSA"], audience="other")


def _claims(relay: Relay, token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(
        token, relay.tokens.key.public_key, algorithms=["EdDSA"], audience=EDGE_AUDIENCE
    )
    return claims


async def test_login_and_refresh_compute_the_roles_from_the_grants_as_they_stand(
    api: Api, relay: Relay
) -> None:
    owner = await api.account("owner")
    org_id = await api.org(owner, "Chain")
    hotel_id = await api.hotel(owner, org_id, "Lisbon")
    member = await api.account("member")
    # Logged in before any grant: the token says so.
    assert _claims(relay, member.access_token)["hotel_roles"] == {}
    await api.grant(owner, org_id, member, "manager", hotel_id=hotel_id)
    await api.grant(owner, org_id, member, "staff", hotel_id=hotel_id, rooms=["101"])
    # The old token keeps what it had until it expires; a refresh brings the grant.
    assert _claims(relay, member.access_token)["hotel_roles"] == {}
    refreshed = expect(
        await api.http.post("/v1/auth/refresh", json={"refresh_token": member.refresh_token}), 200
    )
    claims = _claims(relay, refreshed["access_token"])
    assert claims["hotel_roles"] == {hotel_id: "manager"}
    assert claims["org_roles"] == {}
    # The owner's organisation-wide grant.
    owner_claims = _claims(relay, (await api.login(owner.email))["access_token"])
    assert owner_claims["org_roles"] == {org_id: "owner"}
    assert owner_claims["hotel_roles"] == {}
