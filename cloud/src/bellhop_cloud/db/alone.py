"""Writes that are one PostgreSQL statement, run alone as their own transaction.

    rows = await store.alone(queue_one(row, entry, gateway))

On the path of a remote command across two nodes every round trip to PostgreSQL
counts, and a transaction of a few statements is BEGIN, each statement, COMMIT.
A statement in autocommit is a transaction by itself, atomic as any other: with
data-modifying CTEs, a write of a few rows is one round trip (`Store.alone`).
PostgreSQL only (SQLite takes no INSERT in a WITH, and has no round trips to save).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.db.schema import audit_log, command_results, downlink
from bellhop_cloud.db.store import inline

__all__ = ["queue_one", "results_done", "rows_of"]

P = ParamSpec("P")


class _Rows:
    """Stands for a connection, taking the rows a helper would insert."""

    dialect = None

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def execute(self, _statement: Any, parameters: Any = None) -> None:
        self.rows.extend(parameters or ())


def rows_of(
    helper: Callable[Concatenate[AsyncConnection, P], Coroutine[Any, Any, None]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> list[dict[str, Any]]:
    """The rows `helper` (one that only inserts, e.g. `audit.record`) would insert, so that
    a statement here writes them while their shape stays defined by the helper alone."""
    taken = _Rows()
    inline(cast("Connection", taken), helper)(*args, **kwargs)
    return taken.rows


def _literals(table: sa.Table, row: Mapping[str, Any]) -> list[Any]:
    # Typed, so the driver's casts and the columns' own conversions (JSON, times) apply.
    return [sa.literal(value, table.c[name].type).label(name) for name, value in row.items()]


def queue_one(
    row: Mapping[str, Any], entry: Mapping[str, Any], gateway: sa.Select[Any] | None
) -> sa.Select[Any]:
    """A downlink `row` and its audit `entry`, both written only if the item's id is new to
    the hotel (and, with `gateway`, that query finds a row); the statement's one value is
    how many rows were queued, 0 or 1. A data-modifying CTE runs whether or not it is
    read, and the entry's waits on what the row's returned: neither without the other."""
    match = sa.and_(downlink.c.hotel_id == row["hotel_id"], downlink.c.item_id == row["item_id"])
    new = ~sa.exists().where(match)
    if gateway is not None:
        new = sa.and_(new, gateway.exists())
    queued = (
        postgresql.insert(downlink)
        .from_select(list(row), sa.select(*_literals(downlink, row)).where(new))
        # Two requests of one new id at once: the second writes nothing (and then joins).
        .on_conflict_do_nothing()
        .returning(downlink.c.item_id)
        .cte("queued")
    )
    recorded = (
        audit_log.insert()
        .from_select(
            list(entry),
            sa.select(*_literals(audit_log, entry)).where(sa.exists(sa.select(queued.c.item_id))),
        )
        .cte("recorded")
    )
    return sa.select(sa.func.count()).select_from(queued).add_cte(recorded)


def results_done(hotel_id: str, row: Mapping[str, Any], done: list[str]) -> sa.Update:
    """A command's result stored (replacing any earlier row of its id) and the downlink
    items `done` marked so, in one statement (`sync.results`' two). One row, given as a
    dict: rows given as a list would make a statement SQLAlchemy does not cache."""
    insert = postgresql.insert(command_results).values(dict(row))
    key = {"hotel_id", "command_id"}
    stored = insert.on_conflict_do_update(
        index_elements=[command_results.c.hotel_id, command_results.c.command_id],
        set_={
            c.name: insert.excluded[c.name] for c in command_results.columns if c.name not in key
        },
    ).cte("stored")
    return (
        downlink.update()
        .where(downlink.c.hotel_id == hotel_id, downlink.c.item_id.in_(done))
        .values(state="done")
        .add_cte(stored)
    )
