"""The statements of a remote command's transaction (remote.py), built once.

Building a SQLAlchemy statement and its cache key costs more CPU than running it on
PostgreSQL, and these run for every remote command: built here at import, with named
parameters, each is only executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bellhop_cloud.db.schema import audit_log, downlink, gateway_links

__all__ = ["EARLIER", "EARLIER_ONLINE", "QUEUE_ONE", "QUEUE_ONE_ONLINE", "prefixed"]


def prefixed(row: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """A row's values as the parameters `_values(table, prefix)` names."""
    return {prefix + name: value for name, value in row.items()}


def _values(table: sa.Table, prefix: str, leave_out: frozenset[str] = frozenset()) -> Any:
    """Each column of `table` (but `leave_out`) as a typed parameter `prefix` + its name."""
    return [
        sa.bindparam(prefix + c.name, type_=c.type).label(c.name)
        for c in table.columns
        if c.name not in leave_out
    ]


# The downlink rows of ids (e_ids) of a hotel (e_hotel).
_MATCH: Final = sa.and_(
    downlink.c.hotel_id == sa.bindparam("e_hotel"),
    downlink.c.item_id.in_(sa.bindparam("e_ids", expanding=True)),
)
# A gateway of the hotel holding a bridge, on any node.
_ONLINE: Final = sa.exists().where(
    gateway_links.c.hotel_id == sa.bindparam("e_hotel"), gateway_links.c.connected.is_(True)
)
EARLIER: Final = sa.select(downlink).where(_MATCH)
# One row whatever matches: the gateway's presence, beside each earlier row (or NULLs).
_ONE: Final = sa.select(sa.literal(1).label("one")).subquery("one")
EARLIER_ONLINE: Final = sa.select(_ONLINE.label("_online"), downlink).select_from(
    _ONE.outerjoin(downlink, _MATCH)
)


def _queue_one(online: bool) -> sa.Select[Any]:
    """PostgreSQL: a downlink row (q_*) and its audit entry (a_*), both written only if the
    item's id is new to the hotel (and, with `online`, a gateway of it is connected); the
    statement's value is how many rows it queued, 0 or 1. A data-modifying CTE runs
    whether or not it is read, and the entry's waits on the row's RETURNING: neither is
    written without the other."""
    row = sa.select(*_values(downlink, "q_"))
    if online:
        row = row.where(_ONLINE)
    queued = (
        postgresql.insert(downlink)
        .from_select([c.name for c in downlink.columns], row)
        # An id seen before (or two requests of a new id at once): nothing written here.
        .on_conflict_do_nothing()
        .returning(downlink.c.item_id)
        .cte("queued")
    )
    names = [c.name for c in audit_log.columns if c.name != "id"]
    entry = sa.select(*_values(audit_log, "a_", frozenset({"id"}))).where(
        sa.exists(sa.select(queued.c.item_id))
    )
    recorded = audit_log.insert().from_select(names, entry).cte("recorded")
    return sa.select(sa.func.count()).select_from(queued).add_cte(recorded)


QUEUE_ONE: Final = _queue_one(online=False)
QUEUE_ONE_ONLINE: Final = _queue_one(online=True)
