"""Roles, the permission table and the access a set of grants gives.

A grant gives one user one role in one organisation, over the whole
organisation (`hotel_id=None`), one hotel, or some rooms of one hotel, until
an optional expiry. `Access` is pure: fed the grants and a clock, it answers
questions; the API turns its answers into 403/404. docs/cloud-permissions.md
is this table in prose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MANAGER = "manager"
    STAFF = "staff"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.VIEWER: 1, Role.STAFF: 2, Role.MANAGER: 3, Role.ADMIN: 4, Role.OWNER: 5}


class Permission(StrEnum):
    READ_STATE = "read_state"
    SEND_COMMANDS = "send_commands"
    ACKNOWLEDGE_ALERTS = "acknowledge_alerts"
    MANAGE_MEMBERS = "manage_members"
    ENROL_GATEWAYS = "enrol_gateways"
    MANAGE_HOTELS = "manage_hotels"
    READ_AUDIT = "read_audit"


class Scope(IntEnum):
    """Where a permission applies; a grant must be at least this wide to give it."""

    ROOM = 1
    HOTEL = 2
    ORGANISATION = 3


# (lowest role that has it, narrowest grant scope that carries it)
PERMISSIONS: dict[Permission, tuple[Role, Scope]] = {
    Permission.READ_STATE: (Role.VIEWER, Scope.ROOM),
    Permission.SEND_COMMANDS: (Role.STAFF, Scope.ROOM),
    Permission.ACKNOWLEDGE_ALERTS: (Role.STAFF, Scope.ROOM),
    Permission.MANAGE_MEMBERS: (Role.MANAGER, Scope.HOTEL),
    Permission.ENROL_GATEWAYS: (Role.ADMIN, Scope.HOTEL),
    Permission.MANAGE_HOTELS: (Role.ADMIN, Scope.ORGANISATION),
    Permission.READ_AUDIT: (Role.ADMIN, Scope.ORGANISATION),
}


def role_has(role: Role, permission: Permission) -> bool:
    return role.rank >= PERMISSIONS[permission][0].rank


def may_grant(grantor: Role, role: Role) -> bool:
    """Owners grant any role; everyone else only roles strictly below their own."""
    return grantor is Role.OWNER or role.rank < grantor.rank


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: str
    org_id: str
    user_id: str
    role: Role
    hotel_id: str | None = None  # None: every hotel of the organisation
    rooms: frozenset[str] | None = None  # None: every room of the hotel
    expires_at: datetime | None = None

    @property
    def scope(self) -> Scope:
        if self.hotel_id is None:
            return Scope.ORGANISATION
        return Scope.HOTEL if self.rooms is None else Scope.ROOM

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now

    def covers_hotel(self, hotel_id: str) -> bool:
        return self.hotel_id is None or self.hotel_id == hotel_id


@dataclass(frozen=True, slots=True)
class Access:
    """What one user may do inside one organisation, from their active grants."""

    org_id: str
    grants: tuple[Grant, ...] = field(default=())

    @classmethod
    def of(cls, org_id: str, grants: list[Grant], now: datetime) -> Access:
        return cls(org_id, tuple(g for g in grants if g.org_id == org_id and g.active(now)))

    @property
    def is_member(self) -> bool:
        return bool(self.grants)

    def org_role(self) -> Role | None:
        return best_role(g.role for g in self.grants if g.scope is Scope.ORGANISATION)

    def hotel_role(self, hotel_id: str) -> Role | None:
        """The best role that holds for the whole hotel (room-limited grants excluded)."""
        return best_role(
            g.role for g in self.grants if g.rooms is None and g.covers_hotel(hotel_id)
        )

    def room_role(self, hotel_id: str, room_id: str) -> Role | None:
        return best_role(
            g.role
            for g in self.grants
            if g.covers_hotel(hotel_id) and (g.rooms is None or room_id in g.rooms)
        )

    def sees_hotel(self, hotel_id: str) -> bool:
        return any(g.covers_hotel(hotel_id) for g in self.grants)

    def visible_rooms(self, hotel_id: str) -> frozenset[str] | None:
        """None when every room of the hotel is readable, else the readable rooms."""
        if self.hotel_role(hotel_id) is not None:
            return None
        rooms: set[str] = set()
        for g in self.grants:
            if g.covers_hotel(hotel_id) and g.rooms is not None:
                rooms |= g.rooms
        return frozenset(rooms)

    def can(
        self,
        permission: Permission,
        *,
        hotel_id: str | None = None,
        room_id: str | None = None,
    ) -> bool:
        """Whether `permission` holds on the organisation, a hotel, or a room."""
        minimum, narrowest = PERMISSIONS[permission]
        if hotel_id is None:
            role = self.org_role()
        elif room_id is None or narrowest is not Scope.ROOM:
            role = self.hotel_role(hotel_id) if narrowest <= Scope.HOTEL else self.org_role()
        else:
            role = self.room_role(hotel_id, room_id)
        return role is not None and role.rank >= minimum.rank

    def ceiling(self, hotel_id: str | None) -> Role | None:
        """The role this user holds where a new grant would apply."""
        return self.org_role() if hotel_id is None else self.hotel_role(hotel_id)


def best_role(roles: Iterable[Role]) -> Role | None:
    """The highest of `roles`, or None; the first of equals."""
    best: Role | None = None
    for role in roles:
        if best is None or role.rank > best.rank:
            best = role
    return best
