"""The permission table and `Access`, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bellhop_cloud.rbac.permissions import Access, Grant, Permission, Role, may_grant, role_has

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# The table of docs/cloud-permissions.md, row by row.
TABLE = {
    Permission.READ_STATE: {"owner", "admin", "manager", "staff", "viewer"},
    Permission.SEND_COMMANDS: {"owner", "admin", "manager", "staff"},
    Permission.ACKNOWLEDGE_ALERTS: {"owner", "admin", "manager", "staff"},
    Permission.MANAGE_MEMBERS: {"owner", "admin", "manager"},
    Permission.ENROL_GATEWAYS: {"owner", "admin"},
    Permission.MANAGE_HOTELS: {"owner", "admin"},
    Permission.READ_AUDIT: {"owner", "admin"},
}


@pytest.mark.parametrize("permission", list(Permission))
def test_permission_table_matches_the_documented_one(permission: Permission) -> None:
    assert {r.value for r in Role if role_has(r, permission)} == TABLE[permission]


def grant(role: Role, hotel: str | None = None, **extra: object) -> Grant:
    return Grant("g", "org", "u", role, hotel_id=hotel, **extra)  # type: ignore[arg-type]


def test_org_wide_grant_covers_every_hotel() -> None:
    access = Access.of("org", [grant(Role.STAFF)], NOW)
    assert access.can(Permission.SEND_COMMANDS, hotel_id="h1")
    assert access.can(Permission.SEND_COMMANDS, hotel_id="h2", room_id="101")
    assert not access.can(Permission.ENROL_GATEWAYS, hotel_id="h1")
    assert access.visible_rooms("h1") is None


def test_hotel_grant_stays_in_its_hotel() -> None:
    access = Access.of("org", [grant(Role.ADMIN, "h1")], NOW)
    assert access.can(Permission.ENROL_GATEWAYS, hotel_id="h1")
    assert not access.sees_hotel("h2")
    assert not access.can(Permission.READ_STATE, hotel_id="h2")
    # Organisation-wide powers need an organisation-wide grant.
    assert not access.can(Permission.READ_AUDIT)
    assert not access.can(Permission.MANAGE_HOTELS)


def test_room_grant_gives_room_powers_only() -> None:
    access = Access.of("org", [grant(Role.STAFF, "h1", rooms=frozenset({"101"}))], NOW)
    assert access.visible_rooms("h1") == frozenset({"101"})
    assert access.can(Permission.SEND_COMMANDS, hotel_id="h1", room_id="101")
    assert not access.can(Permission.SEND_COMMANDS, hotel_id="h1", room_id="102")
    assert not access.can(Permission.READ_STATE, hotel_id="h1")


def test_best_of_several_grants_wins_and_expired_ones_count_for_nothing() -> None:
    access = Access.of(
        "org",
        [
            grant(Role.VIEWER),
            grant(Role.MANAGER, "h1", expires_at=NOW - timedelta(seconds=1)),
            grant(Role.STAFF, "h1", expires_at=NOW + timedelta(days=7)),
        ],
        NOW,
    )
    assert access.hotel_role("h1") is Role.STAFF
    assert access.hotel_role("h2") is Role.VIEWER
    assert Access.of("org", [grant(Role.OWNER, expires_at=NOW)], NOW).is_member is False


def test_grants_of_other_organisations_are_ignored() -> None:
    foreign = Grant("g", "other-org", "u", Role.OWNER)
    assert not Access.of("org", [foreign], NOW).is_member


@pytest.mark.parametrize(
    ("grantor", "role", "allowed"),
    [
        (Role.OWNER, Role.OWNER, True),
        (Role.ADMIN, Role.ADMIN, False),
        (Role.ADMIN, Role.MANAGER, True),
        (Role.MANAGER, Role.STAFF, True),
        (Role.MANAGER, Role.MANAGER, False),
        (Role.STAFF, Role.VIEWER, True),
    ],
)
def test_grant_ceiling(grantor: Role, role: Role, allowed: bool) -> None:
    assert may_grant(grantor, role) is allowed


def test_access_cache_honours_its_ttl_and_the_first_grant_expiry() -> None:
    from bellhop_cloud.rbac.cache import AccessCache

    cache: AccessCache[str] = AccessCache(ttl_s=1.0)
    cache.put("u", "h", "value", 100.0, first_expiry=None, wall_now=NOW)
    assert cache.get("u", "h", 100.9) == "value"
    assert cache.get("u", "h", 101.0) is None
    soon = NOW + timedelta(seconds=0.25)
    cache.put("u", "h", "value", 200.0, first_expiry=soon, wall_now=NOW)
    assert cache.get("u", "h", 200.2) == "value"
    assert cache.get("u", "h", 200.3) is None  # the grant ended before the TTL
    cache.put("u", "h", "value", 300.0, first_expiry=None, wall_now=NOW)
    cache.clear()
    assert cache.get("u", "h", 300.0) is None
    off: AccessCache[str] = AccessCache(ttl_s=0)
    off.put("u", "h", "value", 0.0, first_expiry=None, wall_now=NOW)
    assert off.get("u", "h", 0.0) is None
