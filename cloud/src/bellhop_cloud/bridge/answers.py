"""Which downlink items a gateway's answers answer, and its direct answers stored.

Each kind of item is answered only by its own kind of answer: a command by a command's
result, an alert's acknowledgement ("ack:<alert id>") by the alert acknowledged or
cleared, a desired change ("desired:<id>") by the merge that names it. A command id
never holds a `:` (the REST API's and the LAN API's rule), so no command can be named
as one of the relay's own items (docs/remote-control.md).

Every function runs inside the caller's transaction (bridge/sync.py, bridge/downlink.py).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bellhop_cloud import remote_sql
from bellhop_cloud.bridge.items import OUTSTANDING, ItemKind
from bellhop_cloud.bridge.plan import Plan
from bellhop_cloud.db.schema import command_results, downlink

__all__ = ["answered", "answered_ids", "left_to_the_gateway", "results"]


def results(conn: Connection, plan: Plan) -> None:
    """Store command results that came outside the outbox (a gateway's direct answer).

    A refusal of a reused id (`Plan.reused`: the answer's `id_reused` flag, set by the
    edge's command service, which refuses so before anything runs and keeps no record of
    it) is not a result of the command that the id names, which the LAN sent and ran: it
    is not stored, and the relay's row of the id is deleted, so that the id's resource
    never shows one command's request with another's result (the caller waiting is told
    409, api/routes_commands.py). A failure is told from it by the flag alone, never by
    its error's words: a device's own error may read the same."""
    refused = frozenset(plan.reused & plan.commands.keys())
    if refused:
        conn.execute(
            downlink.delete().where(
                downlink.c.hotel_id == plan.hotel_id,
                downlink.c.kind == ItemKind.COMMAND.value,
                downlink.c.item_id.in_(sorted(refused)),
            )
        )
    stored = [row for command_id, row in plan.commands.items() if command_id not in refused]
    done = answered_ids(plan, refused)
    if conn.dialect.name == "postgresql" and len(stored) == 1 and done:
        # A direct answer is one result: stored and its row done in one statement, one
        # round trip fewer on the path of a remote command.
        (row,) = stored
        parameters = {f"r_{name}": value for name, value in row.items()}
        parameters.update(done_hotel=plan.hotel_id, done=done, done_state="done")
        conn.execute(remote_sql.RESULT_DONE, parameters)
        return
    if stored:
        insert: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(
            command_results
        )
        names = ("device_id", "status", "result", "error", "completed_at")
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=[command_results.c.hotel_id, command_results.c.command_id],
                set_={name: insert.excluded[name] for name in names},
            ),
            stored,
        )
    answered(conn, plan, refused)


def left_to_the_gateway(conn: Connection, plan: Plan, repeats: frozenset[str]) -> frozenset[str]:
    """The outbox's command results (but `repeats`) that do not answer the relay's
    command of the same id: that command was requested after the result was complete,
    so the result may be of an earlier command of that id, run on the LAN, which may be
    another command. Only the gateway can tell, and it answers the relay's command
    directly: from its record of that run (the same command) or refused (another:
    api/routes_commands.py answers 409). Such a result is stored all the same (its batch
    is acknowledged): "complete before requested" compares the gateway's clock with the
    relay's, so it may be the relay's own command's, which must not be lost. One look,
    for results this node did not store from a direct answer already."""
    fresh = [c for c in plan.commands if c not in repeats and ":" not in c]
    if not fresh:
        return frozenset()
    rows = conn.execute(
        sa.select(downlink.c.item_id, downlink.c.requested_at).where(
            downlink.c.hotel_id == plan.hotel_id,
            downlink.c.kind == ItemKind.COMMAND.value,
            downlink.c.item_id.in_(fresh),
            downlink.c.state.in_(OUTSTANDING),
        )
    )
    return frozenset(
        row.item_id
        for row in rows
        if (plan.commands[row.item_id]["completed_at"] or 0) < row.requested_at
    )


def answered(conn: Connection, plan: Plan, repeats: frozenset[str] = frozenset()) -> None:
    """What the relay sent down is done once the edge's answer is stored (answered_ids),
    each kind of item only by its own kind of answer."""
    matches = [
        sa.and_(downlink.c.kind == kind.value, downlink.c.item_id.in_(ids))
        for kind, ids in _answered(plan, repeats).items()
        if ids
    ]
    if matches:
        conn.execute(
            downlink.update()
            .where(downlink.c.hotel_id == plan.hotel_id, sa.or_(*matches))
            .values(state="done")
        )


def answered_ids(plan: Plan, repeats: frozenset[str] = frozenset()) -> list[str]:
    """The downlink items a batch answers: a command's result, an alert acknowledged (or
    cleared) on the edge, a desired change merged (`repeats`: results answered before)."""
    return [item_id for ids in _answered(plan, repeats).values() for item_id in ids]


def _answered(plan: Plan, repeats: frozenset[str]) -> dict[ItemKind, list[str]]:
    """`answered_ids` by the kind of item each answers. A result whose id holds a `:`
    (from an edge of before the rule) answers no item, and an acknowledgement or a
    merge answers no command."""
    return {
        ItemKind.COMMAND: [
            command_id
            for command_id in plan.commands
            if command_id not in repeats and ":" not in command_id
        ],
        ItemKind.ALERT_ACK: [
            f"ack:{alert_id}"
            for alert_id, row in plan.alerts.items()
            if row["state"] in ("acknowledged", "cleared")
        ],
        ItemKind.DESIRED: [
            row["change_id"]
            for row in plan.desired.values()
            if row["change_id"] and row["change_id"].startswith("desired:")
        ],
    }
