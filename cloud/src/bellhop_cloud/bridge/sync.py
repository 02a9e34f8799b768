"""The relay's database side of the bridge: applying plans, and the lanes they move.

Every function runs inside the caller's transaction, on a synchronous
connection (`store.run(apply_batch, ...)`: on SQLite one hop to the store's
thread for the whole batch), so a batch's rows and its lanes' new positions are
committed together: an event is applied once however often the edge sends it
(`bellhop_bridge.Dedup` against `last_applied`, read under the row's lock).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import Dedup
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.bridge.answers import answered, answered_ids, left_to_the_gateway, results
from bellhop_cloud.bridge.plan import Plan, valid_id
from bellhop_cloud.db.schema import (
    UtcDateTime,
    alerts,
    command_results,
    desired_states,
    devices,
    gateway_links,
    gateways,
    hotels,
    sync_gaps,
)
from bellhop_cloud.db.store import inline
from bellhop_cloud.hotels import Room, upsert_rooms
from bellhop_cloud.notify import queue as notify_queue

__all__ = [
    "BULK",
    "PRIORITY",
    "Applied",
    "answered",
    "answered_ids",
    "apply",
    "apply_batch",
    "apply_snapshot",
    "lanes",
    "results",
]

BULK, PRIORITY = int(bridge_pb2.LANE_BULK), int(bridge_pb2.LANE_PRIORITY)


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def lanes(conn: Connection, gateway_id: str) -> dict[int, int] | None:
    """Each lane's last applied sequence, the row locked until the transaction ends."""
    row = conn.execute(_LANES, {"l_gateway": gateway_id}).first()
    return None if row is None else {BULK: int(row[0]), PRIORITY: int(row[1])}


# Built once, as the other statements of every batch: building one costs more than running it.
_LANES: Final = (
    sa.select(gateway_links.c.last_bulk_seq, gateway_links.c.last_priority_seq)
    .where(gateway_links.c.gateway_id == sa.bindparam("l_gateway"))
    .with_for_update()
)


@dataclass(frozen=True, slots=True)
class Applied:
    """What `apply_batch` did."""

    plan: Plan
    highest: dict[int, int]  # each lane's highest sequence in the batch: what to acknowledge
    answered: list[str]  # the downlink items it answered (answered_ids), repeats left out


# A command's result this node stored already from the gateway's direct answer, by id.
Stored = Callable[[str], Mapping[str, Any] | None]


def apply_batch(
    conn: Connection,
    gateway_id: str,
    hotel_id: str,
    events: Iterable[bridge_pb2.OutboxEvent],
    now: datetime,
    *,
    seen: bool,
    stored: Stored | None = None,
) -> Applied:
    """A batch of the gateway's outbox, the whole of it in the caller's transaction: the
    lanes read under the row's lock, the new events planned and applied, the lanes moved.

    `stored`: a command's result arrives twice, first as the gateway's direct answer
    (stored then, by `results`) and then in the outbox; a result the same as the one
    `stored` names is not written a second time, nor its downlink row marked done again
    (it still is in the plan, for the live events).
    """
    dedup = Dedup(dict(lanes(conn, gateway_id) or {}))
    plan = Plan.of(dedup.fresh(events), hotel_id)
    repeats = frozenset(
        command_id
        for command_id, row in plan.commands.items()
        if stored is not None and stored(command_id) == row
    )
    waiting = apply(conn, gateway_id, plan, now, seen=seen, repeats=repeats)
    return Applied(plan, dict(dedup.highest), answered_ids(plan, repeats | waiting))


def apply(
    conn: Connection,
    gateway_id: str,
    plan: Plan,
    now: datetime,
    *,
    seen: bool = True,
    repeats: frozenset[str] = frozenset(),
) -> frozenset[str]:
    """Write the plan's rows and move the lanes forward, in the caller's transaction.

    `seen`: also move the gateway's and hotel's `last_seen` (the caller throttles it).
    `repeats`: command results already stored as they are in the plan (apply_batch).
    Returns the results left for the gateway's direct answer (`left_to_the_gateway`).
    """
    link = {
        "gateway_id": gateway_id,
        "now": now,
        "bulk": plan.last_seq.get(BULK),
        "priority": plan.last_seq.get(PRIORITY),
        "gap_points": sum(g["telemetry_points"] for g in plan.gaps),
        "gap_events": sum(g["other_events"] for g in plan.gaps),
    }
    if plan.alerts:
        # Before the alerts are written (it tells new ones from known): the notifications
        # commit with the change that causes them, or not at all.
        notify_queue.on_alerts(conn, plan.hotel_id, plan.alerts, now)
    if conn.dialect.name == "postgresql":
        # The points, the device events and the link row in one statement.
        conn.execute(_HISTORY_POSTGRES, {**link, **_columns(plan)})
        _gaps(conn, gateway_id, plan, now)
        waiting = _current(conn, plan, now, repeats)
    else:
        _history_sqlite(conn, plan)
        _gaps(conn, gateway_id, plan, now)
        waiting = _current(conn, plan, now, repeats)
        conn.execute(_LINK_SQLITE, link)
    if seen:
        _seen(conn, gateway_id, plan.hotel_id, now)
    return waiting


def _gaps(conn: Connection, gateway_id: str, plan: Plan, now: datetime) -> None:
    if plan.gaps:
        conn.execute(
            sync_gaps.insert(),
            [
                {"hotel_id": plan.hotel_id, "gateway_id": gateway_id, "received_at": now, **g}
                for g in plan.gaps
            ],
        )


# What is only ever added (telemetry points, device events) and the lanes' new positions,
# in statements of fixed text: SQLAlchemy's own work for a statement built per batch cost
# more than the statement itself (bench/catchup.py).
#
# On PostgreSQL, one statement for all three: each table's rows as arrays, one per
# column (its CPU per point is about half what the same rows cost as one INSERT each).
# Ids and metric names travel as one text each, joined by a character neither can hold
# (`_SEP`, chr(31)): the driver checks every element of a text array in Python. A device
# event's data is JSON text as SQLAlchemy's JSON type writes it (`json.dumps`). The
# link's lanes only go forward (GREATEST ignores the lane a batch does not move, given
# as NULL); its gap counts add up.
_SEP: Final = chr(31)
_HISTORY_POSTGRES: Final = sa.text(
    "WITH points AS ("
    " INSERT INTO telemetry (hotel_id, device_id, metric, ts, value)"
    " SELECT CAST(:hotel_id AS VARCHAR), d, m, t, v FROM unnest("
    "string_to_array(CAST(:device_ids AS TEXT), chr(31)),"
    " string_to_array(CAST(:metrics AS TEXT), chr(31)),"
    " CAST(:ts AS BIGINT[]), CAST(:value AS DOUBLE PRECISION[])) AS p(d, m, t, v)"
    " ON CONFLICT DO NOTHING"
    "), events AS ("
    " INSERT INTO device_events (hotel_id, device_id, kind, ts, data)"
    " SELECT CAST(:hotel_id AS VARCHAR), d, k, t, CAST(x AS JSON) FROM unnest("
    "CAST(:event_device_ids AS VARCHAR[]), CAST(:event_kinds AS VARCHAR[]),"
    " CAST(:event_ts AS BIGINT[]), CAST(:event_data AS TEXT[])) AS e(d, k, t, x)"
    ")"
    " UPDATE gateway_links SET last_heard_at = :now,"
    " last_bulk_seq = GREATEST(last_bulk_seq, CAST(:bulk AS BIGINT)),"
    " last_priority_seq = GREATEST(last_priority_seq, CAST(:priority AS BIGINT)),"
    " gap_points = gap_points + CAST(:gap_points AS BIGINT),"
    " gap_events = gap_events + CAST(:gap_events AS BIGINT)"
    " WHERE gateway_id = :gateway_id"
).bindparams(sa.bindparam("now", type_=UtcDateTime))
# On SQLite, one `executemany` of plain tuples per table, without SQLAlchemy's per-row
# work, and the link row (MAX of SQLite is NULL if either side is, hence COALESCE).
_POINTS_SQLITE: Final = (
    "INSERT INTO telemetry (hotel_id, device_id, metric, ts, value) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT DO NOTHING"
)
_EVENTS_SQLITE: Final = (
    "INSERT INTO device_events (hotel_id, device_id, kind, ts, data) VALUES (?, ?, ?, ?, ?)"
)
_LINK_SQLITE: Final = sa.text(
    "UPDATE gateway_links SET last_heard_at = :now,"
    " last_bulk_seq = max(last_bulk_seq, coalesce(:bulk, last_bulk_seq)),"
    " last_priority_seq = max(last_priority_seq, coalesce(:priority, last_priority_seq)),"
    " gap_points = gap_points + :gap_points, gap_events = gap_events + :gap_events"
    " WHERE gateway_id = :gateway_id"
).bindparams(sa.bindparam("now", type_=UtcDateTime))


def _joined(values: list[str], what: str) -> str:
    """Values as one text that PostgreSQL splits into exactly these values again (the
    plan's ids and names are never empty and never hold the separator: checked all
    the same, since a mistake here would shift every column after it)."""
    text = _SEP.join(values)
    if text.count(_SEP) != max(len(values) - 1, 0) or "" in values:
        raise ValueError(f"a {what} that cannot be joined: empty or holding the separator")
    return text


def _columns(plan: Plan) -> dict[str, Any]:
    """The plan's points and device events, column by column (`_HISTORY_POSTGRES`)."""
    points, events = plan.telemetry, plan.events
    return {
        "hotel_id": plan.hotel_id,
        "device_ids": _joined(points.device_id, "device id"),
        "metrics": _joined(points.metric, "metric"),
        "ts": points.ts,
        "value": points.value,
        "event_device_ids": [e["device_id"] for e in events],
        "event_kinds": [e["kind"] for e in events],
        "event_ts": [e["ts"] for e in events],
        "event_data": [json.dumps(e["data"]) for e in events],
    }


def _history_sqlite(conn: Connection, plan: Plan) -> None:
    if plan.telemetry:
        conn.exec_driver_sql(_POINTS_SQLITE, list(plan.telemetry.tuples()))
    if plan.events:
        rows = [
            (e["hotel_id"], e["device_id"], e["kind"], e["ts"], json.dumps(e["data"]))
            for e in plan.events
        ]
        conn.exec_driver_sql(_EVENTS_SQLITE, rows)


def _current(
    conn: Connection, plan: Plan, now: datetime, repeats: frozenset[str] = frozenset()
) -> frozenset[str]:
    """What is kept as it is now: rooms, devices, state, alerts, command results; returns
    the results left for the gateway's direct answer (`left_to_the_gateway`)."""
    hotel_id = plan.hotel_id
    if plan.rooms:
        inline(conn, upsert_rooms)(
            hotel_id,
            [Room(k, v["name"], v["floor"], now) for k, v in plan.rooms.items()],
        )
    if plan.devices:
        _registry(conn, hotel_id, plan.devices)
    for table in (devices, desired_states) if plan.removed else ():
        conn.execute(
            table.delete().where(table.c.hotel_id == hotel_id, table.c.device_id.in_(plan.removed))
        )
    if plan.states:
        _states(conn, hotel_id, plan.states)
    # Stored all the same (this batch is acknowledged: the gateway forgets it), but
    # answering nothing: the gateway's direct answer settles the relay's command. The
    # comparison behind `waiting` is of two clocks (the gateway's completion, the
    # relay's request), so a result of the relay's own command may land there.
    waiting = left_to_the_gateway(conn, plan, repeats)
    latest = (
        (desired_states, [desired_states.c.hotel_id, desired_states.c.device_id], plan.desired),
        (alerts, [alerts.c.hotel_id, alerts.c.alert_id], plan.alerts),
        (
            command_results,
            [command_results.c.hotel_id, command_results.c.command_id],
            {k: v for k, v in plan.commands.items() if k not in repeats},
        ),
    )
    for table, key, rows in latest:
        if rows:
            _replace(conn, table, key, list(rows.values()))
    answered(conn, plan, repeats | waiting)
    return waiting


def _seen(conn: Connection, gateway_id: str, hotel_id: str, now: datetime) -> None:
    """The hotel and its gateway were heard from now (`last_seen` of the REST API)."""
    conn.execute(gateways.update().where(gateways.c.id == gateway_id).values(last_seen=now))
    conn.execute(
        hotels.update()
        .where(
            hotels.c.id == hotel_id, sa.or_(hotels.c.last_seen.is_(None), hotels.c.last_seen < now)
        )
        .values(last_seen=now)
    )


def _registry(conn: Connection, hotel_id: str, items: Mapping[str, Mapping[str, Any]]) -> None:
    """Registry changes: kind, room, firmware, connectivity; the state is left alone."""
    rows = [
        {
            "hotel_id": hotel_id,
            "device_id": device_id,
            "room_id": d["room_id"],
            "kind": d["kind"],
            "firmware": d["firmware"],
            "online": d["online"],
            "state": {},
            "last_seen": _at(d["last_seen_ms"]),
        }
        for device_id, d in items.items()
    ]
    statement = _insert(conn, devices)
    statement = statement.on_conflict_do_update(
        index_elements=[devices.c.hotel_id, devices.c.device_id],
        set_={
            name: statement.excluded[name]
            for name in ("room_id", "kind", "firmware", "online", "last_seen")
        },
    )
    conn.execute(statement, rows)


def _states(
    conn: Connection, hotel_id: str, states: Mapping[str, tuple[dict[str, Any], int]]
) -> None:
    """Each device's latest reported state, one statement for the batch (a statement per
    device cost as much as a few hundred points)."""
    rows = [
        {
            "hotel_id": hotel_id,
            "device_id": device_id,
            "kind": "unspecified",  # its registry event comes later
            "online": False,
            "state": values,
            "last_seen": _at(updated_ms),
        }
        for device_id, (values, updated_ms) in states.items()
    ]
    conn.execute(_states_upsert(conn.dialect.name), rows)


@functools.cache
def _states_upsert(dialect: str) -> Any:
    statement = (postgresql if dialect == "postgresql" else sqlite).insert(devices)
    seen = statement.excluded.last_seen
    return statement.on_conflict_do_update(
        index_elements=[devices.c.hotel_id, devices.c.device_id],
        # A report is the device heard from: its `last_seen` (freshness in the REST API)
        # moves forward with it, never back (batches of a resync may be older).
        set_={
            "state": statement.excluded.state,
            "last_seen": sa.case(
                (sa.or_(devices.c.last_seen.is_(None), devices.c.last_seen < seen), seen),
                else_=devices.c.last_seen,
            ),
        },
    )


def _replace(
    conn: Connection, table: sa.Table, key: list[sa.Column[Any]], rows: list[dict[str, Any]]
) -> None:
    statement = _insert(conn, table)
    names = [c.name for c in table.columns if c.name not in {k.name for k in key}]
    statement = statement.on_conflict_do_update(
        index_elements=key, set_={name: statement.excluded[name] for name in names}
    )
    conn.execute(statement, rows)


async def apply_snapshot(
    conn: AsyncConnection, gateway_id: str, hotel_id: str, snapshot: bridge_pb2.Snapshot
) -> Plan:
    """A full picture from the edge: the relay's rooms, devices, state and open alerts
    become exactly the edge's, in the caller's transaction (rare: statement by statement)."""
    return await conn.run_sync(_apply_snapshot, gateway_id, hotel_id, snapshot)


def _apply_snapshot(
    conn: Connection, gateway_id: str, hotel_id: str, snapshot: bridge_pb2.Snapshot
) -> Plan:
    events: list[bridge_pb2.OutboxEvent] = []
    for room in snapshot.rooms:
        events.append(bridge_pb2.OutboxEvent(room=room))
    for device in snapshot.devices:
        events.append(bridge_pb2.OutboxEvent(device=device))
    for state in snapshot.states:
        events.append(bridge_pb2.OutboxEvent(state=state))
    for alert in snapshot.alerts:
        events.append(bridge_pb2.OutboxEvent(alert=alert))
    for wanted in snapshot.desired:
        events.append(bridge_pb2.OutboxEvent(desired=wanted))
    plan = Plan.of(events, hotel_id)
    plan.last_seq.clear()  # a snapshot moves no lane
    now = datetime.now(UTC)
    # Kept: every device and alert the snapshot names, even one whose entry was skipped
    # as invalid (an entry refused is not a device or alert that ended).
    kept = {d.device_id for d in snapshot.devices if valid_id(d.device_id)}
    still_open = {a.alert_id for a in snapshot.alerts if valid_id(a.alert_id)}
    for table in (devices, desired_states):
        conn.execute(
            table.delete().where(table.c.hotel_id == hotel_id, table.c.device_id.not_in(kept))
        )
    # Alerts the relay holds open that the edge no longer does ended meanwhile.
    conn.execute(
        alerts.update()
        .where(
            alerts.c.hotel_id == hotel_id,
            alerts.c.state != "cleared",
            alerts.c.alert_id.not_in(still_open),
        )
        .values(state="cleared", cleared_at=int(now.timestamp() * 1000))
    )
    apply(conn, gateway_id, plan, now)
    return plan
