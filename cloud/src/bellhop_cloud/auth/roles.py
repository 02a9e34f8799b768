"""The roles an access token carries, for gateways that verify it offline.

The relay itself never reads them: its REST API checks grants live
(docs/cloud-permissions.md). A gateway has no database of grants, so the
token says what its holder may do on a hotel's LAN API:

    hotel_roles  {hotel_id: role}  hotel-wide grants
    org_roles    {org_id: role}    organisation-wide grants (every hotel of the org)

Computed from the account's active grants when a token is issued (login,
refresh, password change), so a grant given or taken away reaches the LAN at
the next refresh and an old token keeps what it had until it expires.

- The best role wins where several grants apply; a hotel entry no better than
  its organisation's entry is left out (the org entry covers it), which keeps an
  owner of a large organisation's token small.
- Room-limited grants are left out: the LAN API has no per-room filter, so
  honouring one there would give its holder the whole hotel.
- At most `MAX_ENTRIES` entries in all, organisations first, then hotels by
  role (highest first) and id; past that the token says `roles_truncated: true`
  and a gateway whose hotel was cut refuses the token saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.db.schema import grants
from bellhop_cloud.rbac.permissions import Grant, Role, Scope

__all__ = ["MAX_ENTRIES", "TokenRoles", "load_grants", "token_roles"]

# Keeps a token well inside the 8 KiB a gRPC metadata block or an HTTP header
# usually may be: 64 entries of a 20-character id and a role are about 2 KiB.
MAX_ENTRIES: Final = 64


@dataclass(frozen=True, slots=True)
class TokenRoles:
    hotel_roles: Mapping[str, str] = field(default_factory=dict)
    org_roles: Mapping[str, str] = field(default_factory=dict)
    truncated: bool = False

    def claims(self) -> dict[str, Any]:
        """The claims to add to an access token (always both maps, possibly empty)."""
        claims: dict[str, Any] = {
            "hotel_roles": dict(self.hotel_roles),
            "org_roles": dict(self.org_roles),
        }
        if self.truncated:
            claims["roles_truncated"] = True
        return claims


def token_roles(
    account_grants: Iterable[Grant], now: datetime, *, limit: int = MAX_ENTRIES
) -> TokenRoles:
    """What a token issued at `now` carries for these grants (see the module's rules)."""
    orgs: dict[str, Role] = {}
    hotels: dict[str, tuple[str, Role]] = {}  # hotel -> (its org, best role)
    for grant in account_grants:
        if not grant.active(now):
            continue
        if grant.scope is Scope.ORGANISATION:
            if grant.org_id not in orgs or grant.role.rank > orgs[grant.org_id].rank:
                orgs[grant.org_id] = grant.role
        elif grant.scope is Scope.HOTEL:
            assert grant.hotel_id is not None
            known = hotels.get(grant.hotel_id)
            if known is None or grant.role.rank > known[1].rank:
                hotels[grant.hotel_id] = (grant.org_id, grant.role)
    useful = [
        (hotel_id, role)
        for hotel_id, (org_id, role) in hotels.items()
        if org_id not in orgs or role.rank > orgs[org_id].rank
    ]
    org_entries = sorted(orgs.items(), key=lambda item: (-item[1].rank, item[0]))
    hotel_entries = sorted(useful, key=lambda item: (-item[1].rank, item[0]))
    kept_orgs = org_entries[:limit]
    kept_hotels = hotel_entries[: max(0, limit - len(kept_orgs))]
    return TokenRoles(
        hotel_roles={hotel_id: role.value for hotel_id, role in kept_hotels},
        org_roles={org_id: role.value for org_id, role in kept_orgs},
        truncated=len(kept_orgs) + len(kept_hotels) < len(org_entries) + len(hotel_entries),
    )


async def load_grants(conn: AsyncConnection, user_id: str) -> list[Grant]:
    """Every grant of the account (expired ones included; `token_roles` drops them)."""
    rows = await conn.execute(
        sa.select(
            grants.c.id,
            grants.c.org_id,
            grants.c.role,
            grants.c.hotel_id,
            grants.c.rooms,
            grants.c.expires_at,
        ).where(grants.c.user_id == user_id)
    )
    return [
        Grant(
            grant_id=row.id,
            org_id=row.org_id,
            user_id=user_id,
            role=Role(row.role),
            hotel_id=row.hotel_id,
            rooms=frozenset(row.rooms) if row.rooms is not None else None,
            expires_at=row.expires_at,
        )
        for row in rows
    ]
