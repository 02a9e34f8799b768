"""Queueing notifications in the transaction that changes the alert (bridge/sync.py,
remote.py): an alert newly raised gets its rows, one acknowledged or cleared has its
unsent rows cancelled. Synchronous: these run inside `Store.run`'s transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from bellhop_bridge.notify_core import PENDING, RAISED, Policy, Retry, RowState, Schedule
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from bellhop_cloud.db.schema import alerts, notifications, notify_policies

__all__ = ["on_alerts", "policy_of", "stop_escalation"]

_SCHEDULE = Schedule(Retry())  # `raised` does not depend on the retry settings


def policy_of(conn: Connection, hotel_id: str) -> Policy:
    value = conn.execute(
        sa.select(notify_policies.c.policy).where(notify_policies.c.hotel_id == hotel_id)
    ).scalar()
    return Policy.from_json(value)


def on_alerts(
    conn: Connection, hotel_id: str, changed: Mapping[str, Mapping[str, Any]], now: datetime
) -> None:
    """Before the alerts' rows are written: queue the notifications of those raised now
    for the first time, cancel the unsent ones of those acknowledged or cleared."""
    raised = [a for a, row in changed.items() if row["state"] == RAISED]
    ended = [a for a, row in changed.items() if row["state"] in ("acknowledged", "cleared")]
    if ended:
        _cancel(conn, hotel_id, ended)
    if not raised:
        return
    known = set(
        conn.execute(
            sa.select(alerts.c.alert_id).where(
                alerts.c.hotel_id == hotel_id, alerts.c.alert_id.in_(raised)
            )
        ).scalars()
    )
    fresh = [a for a in raised if a not in known]
    if not fresh:
        return
    policy = policy_of(conn, hotel_id)
    if not policy.contacts:
        return
    now_ms = int(now.timestamp() * 1000)
    rows = [
        {
            "hotel_id": hotel_id,
            "alert_id": slot.alert_id,
            "transition": slot.transition,
            "contact_id": slot.contact_id,
            "channel_id": slot.channel_id,
            "step": slot.step,
            "position": slot.position,
            "state": slot.state.value,
            "due_ms": slot.due_ms,
            "attempts": 0,
            "created_ms": now_ms,
        }
        for alert_id in fresh
        for slot in _SCHEDULE.raised(
            alert_id, changed[alert_id]["kind"], changed[alert_id]["severity"], policy, now_ms
        )
    ]
    if rows:
        insert = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(notifications)
        conn.execute(insert.on_conflict_do_nothing(), rows)


def stop_escalation(conn: Connection, hotel_id: str, alert_id: str) -> None:
    """The alert was acknowledged through the API: nobody else is told, even while the
    gateway has not confirmed it yet."""
    _cancel(conn, hotel_id, [alert_id])


def _cancel(conn: Connection, hotel_id: str, alert_ids: list[str]) -> None:
    conn.execute(
        notifications.update()
        .where(
            notifications.c.hotel_id == hotel_id,
            notifications.c.alert_id.in_(alert_ids),
            notifications.c.state.in_(PENDING),
        )
        .values(state=RowState.CANCELLED.value)
    )
