"""The statements of a remote command's path on PostgreSQL (remote.py, the direct answer in
bridge/sync.py), built once.

Building a SQLAlchemy statement and its cache key costs more CPU than running it on
PostgreSQL, and these run for every remote command: built here at import, with named
parameters, each is only executed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bellhop_cloud.db.schema import audit_log, command_results, downlink, gateway_links

__all__ = ["EARLIER", "EARLIER_ONLINE", "QUEUE_ONE", "QUEUE_ONE_ONLINE", "RESULT_DONE", "prefixed"]


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


def _result_done() -> sa.Update:
    """PostgreSQL: a gateway's direct answer (bridge/sync.results): a command's result
    (r_*) stored, replacing any earlier row of its id, and the downlink items `done` of
    the hotel (done_hotel) marked done_state, as one statement."""
    insert = postgresql.insert(command_results).values(
        {c.name: sa.bindparam(f"r_{c.name}", type_=c.type) for c in command_results.columns}
    )
    names = [c.name for c in command_results.columns if c.name not in {"hotel_id", "command_id"}]
    stored = (
        insert.on_conflict_do_update(
            index_elements=[command_results.c.hotel_id, command_results.c.command_id],
            set_={name: insert.excluded[name] for name in names},
        )
        .returning(command_results.c.command_id)
        .cte("stored")
    )
    return (
        downlink.update()
        .where(
            downlink.c.hotel_id == sa.bindparam("done_hotel"),
            downlink.c.item_id.in_(sa.bindparam("done", expanding=True)),
            # Read, so the result is written (and its row locked) before the downlink
            # row, in the order an outbox batch writes them (apply): no deadlock between
            # the two when they run at once.
            sa.exists(sa.select(stored.c.command_id)),
        )
        .values(state=sa.bindparam("done_state"))
        .add_cte(stored)
    )


RESULT_DONE: Final = _result_done()
