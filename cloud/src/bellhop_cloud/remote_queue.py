"""A remote command request's transaction (remote.py): its downlink rows and audit entry,
or why not (an id seen before, reused, a gateway away), in one function the store runs.

    sending = Sending(...)
    if store.is_sqlite or not await store.run_alone(queue_alone, sending):
        await store.run_relaxed(queue_commands, sending)
    await store.flushed()                    # before the caller is told anything

On PostgreSQL one new command is one statement run alone (`queue_alone`, remote_sql.py);
anything else, and that statement when it wrote nothing, is `queue_commands`'s
transaction. Both commit without waiting for the disk; `Store.flushed` makes them durable
before the request answers (docs/remote-control.md).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud import remote_sql as sql
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.bridge.downlink import Item, ItemKind, now_ms
from bellhop_cloud.db.schema import audit_log, command_results, downlink, users
from bellhop_cloud.db.store import relaxed
from bellhop_cloud.errors import CommandIdReused, GatewayOffline
from bellhop_cloud.hotels import Hotel

__all__ = ["CHUNK", "RESULT", "CommandRequest", "Request", "Sending", "known_name", "queue_alone"]
__all__ += ["queue_commands", "who_is"]


@dataclass(frozen=True, slots=True)
class CommandRequest:
    command_id: str
    device_id: str
    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Request:
    """Who asks what of which hotel: the downlink items and audit entries it makes."""

    hotel: Hotel
    user_id: str

    def item(
        self,
        item_id: str,
        kind: ItemKind,
        device_id: str | None,
        body: dict[str, Any],
        *,
        ttl_s: float,
    ) -> Item:
        now = now_ms()
        expires = now + int(ttl_s * 1000)
        return Item(self.hotel.hotel_id, item_id, kind, device_id, body, self.user_id, now, expires)

    def entry(self, action: AuditAction, target: tuple[str, str]) -> dict[str, Any]:
        """`audit.record`'s arguments for the request's entry, but its detail."""
        return {
            "action": action,
            "orgs": [self.hotel.org_id],
            "actor_id": self.user_id,
            "target_type": target[0],
            "target_id": target[1],
        }

    async def record(
        self,
        conn: AsyncConnection,
        action: AuditAction,
        target: tuple[str, str],
        detail: dict[str, Any],
    ) -> None:
        """The request's audit entry, in the transaction that queues it."""
        await audit.record(conn, detail=detail, **self.entry(action, target))


_NAMES: dict[str, tuple[float, str]] = {}
NAMES_S: Final = 60.0
NAMES_MAX: Final = 10_000


def known_name(user_id: str) -> str | None:
    known = _NAMES.get(user_id)
    return known[1] if known is not None and known[0] > time.monotonic() else None


def _name(user_id: str, email: str | None) -> str:
    name = f"cloud:{email or user_id}"
    if len(_NAMES) >= NAMES_MAX:
        _NAMES.clear()
    _NAMES[user_id] = (time.monotonic() + NAMES_S, name)
    return name


def _email(conn: Connection, user_id: str) -> str | None:
    email: str | None = conn.execute(sa.select(users.c.email).where(users.c.id == user_id)).scalar()
    return email


async def who_is(conn: AsyncConnection, user_id: str) -> str:
    known = known_name(user_id)
    if known is not None:
        return known
    return _name(user_id, await conn.run_sync(_email, user_id))


@dataclass(slots=True)
class Sending:
    """A command request's transaction (`queue_commands`): what it was given and what it
    found and did."""

    asker: Request
    requests: Sequence[CommandRequest]
    by: str | None  # who, as both sides show it; None: read in the transaction
    check_online: bool  # refuse unless a gateway of the hotel holds a bridge
    sent_at: int | None  # the rows are written as sent at this time (this node sends them)
    timeout_s: float
    ttl_s: float
    audit_detail: dict[str, Any]
    asked: dict[str, Any] = field(default_factory=dict)  # per id: earlier row or new item
    queued: list[Item] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # stored already
    tried_alone: bool = False  # `queue_alone` ran, and wrote nothing


def queue_commands(conn: Connection, sending: Sending) -> Sending:
    """The downlink rows of the requests that are new and their audit entry, in the
    caller's transaction; the earlier rows and results of their ids read in it too."""
    hotel_id = sending.asker.hotel.hotel_id
    relaxed(conn)  # made durable by `Store.flushed` before the caller hears (send_commands)
    if sending.by is None:
        sending.by = _name(sending.asker.user_id, _email(conn, sending.asker.user_id))
    first = conn.dialect.name == "postgresql" and not sending.tried_alone
    if first and _queued_alone(conn, sending):
        return sending
    ids = [r.command_id for r in sending.requests]
    earlier = _earlier(conn, hotel_id, ids, sending.check_online)
    rows = []
    for request in sending.requests:
        before = earlier.get(request.command_id)
        sending.asked[request.command_id] = before
        if before is None:
            item = _new_item(sending, request)
            rows.append(item.row(sending.sent_at))
            sending.queued.append(item)
            sending.asked[request.command_id] = item
        elif (
            before.kind,
            before.device_id,
            before.body.get("name"),
            before.body.get("params"),
        ) != (
            ItemKind.COMMAND.value,
            request.device_id,
            request.name,
            dict(request.params),
        ):
            raise CommandIdReused.of(request.command_id)
    if rows:
        conn.execute(downlink.insert(), rows)
    conn.execute(audit_log.insert(), _entries(sending))
    # The results of ids asked before (a retry): nothing sends those again. A new row's
    # id needs no look, even if the LAN ran it first: the gateway answers it from its
    # record of that run.
    retried = [i for i in ids if i in earlier]
    for start in range(0, len(retried), CHUNK):
        found = conn.execute(
            sa.select(*RESULT).where(
                command_results.c.hotel_id == hotel_id,
                command_results.c.command_id.in_(retried[start : start + CHUNK]),
            )
        )
        sending.results.update({row.command_id: dict(row._mapping) for row in found})
    return sending


def queue_alone(conn: Connection, sending: Sending) -> bool:
    """PostgreSQL, in autocommit (`Store.run_alone`): one command's row and audit entry as
    one statement, a transaction by itself (`_queued_alone`); False if it wrote nothing,
    and `queue_commands` tells why in a transaction."""
    if sending.by is None:
        sending.by = _name(sending.asker.user_id, _email(conn, sending.asker.user_id))
    sending.tried_alone = True
    return _queued_alone(conn, sending)


def _new_item(sending: Sending, request: CommandRequest) -> Item:
    body = {
        "name": request.name,
        "params": dict(request.params),
        "by": sending.by,
        "timeout_ms": int(sending.timeout_s * 1000),
    }
    kind, device = ItemKind.COMMAND, request.device_id
    return sending.asker.item(request.command_id, kind, device, body, ttl_s=sending.ttl_s)


def _entries(sending: Sending) -> list[dict[str, Any]]:
    entry = sending.asker.entry(AuditAction.COMMAND_SENT, ("hotel", sending.asker.hotel.hotel_id))
    return audit.entry_rows(detail=sending.audit_detail, **entry)


def _queued_alone(conn: Connection, sending: Sending) -> bool:
    """PostgreSQL, one command: its row and audit entry in one statement, written only if
    its id is new to the hotel (and, unless queued, a gateway of the hotel is connected);
    True if it wrote them. Otherwise it wrote nothing, and the caller's statements tell a
    retry, a reused id or an offline gateway apart, in the same transaction."""
    entries = _entries(sending)
    if len(sending.requests) != 1 or len(entries) != 1:
        return False
    item = _new_item(sending, sending.requests[0])
    statement = sql.QUEUE_ONE_ONLINE if sending.check_online else sql.QUEUE_ONE
    parameters = sql.prefixed(item.row(sending.sent_at), "q_")
    parameters.update(sql.prefixed(entries[0], "a_"), e_hotel=item.hotel_id)
    if not conn.execute(statement, parameters).scalar():
        return False
    sending.asked[item.item_id] = item
    sending.queued.append(item)
    return True


def _earlier(conn: Connection, hotel_id: str, ids: list[str], check_online: bool) -> dict[str, Any]:
    """The downlink rows of `ids` queued before, by id; with `check_online`, GatewayOffline
    unless a gateway of the hotel holds a bridge, asked in the same statement (one round
    trip fewer on PostgreSQL, in the transaction of a node that does not hold the bridge)."""
    given = {"e_hotel": hotel_id, "e_ids": ids}
    if not check_online:
        return {row.item_id: row for row in conn.execute(sql.EARLIER, given)}
    found = conn.execute(sql.EARLIER_ONLINE, given).all()
    if not found or not found[0]._online:
        raise GatewayOffline(
            "the hotel's gateway is not connected; send again with mode=queue to have"
            " the command delivered when it reconnects (before its expiry)"
        )
    return {row.item_id: row for row in found if row.item_id is not None}


CHUNK: Final = 500  # ids per IN (...) query
RESULT: Final = (
    command_results.c.command_id,
    command_results.c.status,
    command_results.c.result,
    command_results.c.error,
    command_results.c.completed_at,
)
