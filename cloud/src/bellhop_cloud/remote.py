"""Remote control: commands and alert acknowledgements for a hotel's gateway.

    statuses = await remote.send_commands(relay, hotel, user_id, requests, ...)
    outcome, alert = await remote.acknowledge(relay, hotel, user_id, alert_id, note)

Each request is a `downlink` row, written with its audit entry in one
transaction, then announced to whichever node holds the hotel's bridge
(bridge/downlink.py). A command's transaction is one function run by the store
(`Store.run`: one hop to its thread on SQLite), which also reads the results
of a retry's ids.

The command id is the idempotency key on every path: the same id again (here,
or first sent on the hotel LAN) joins the first request and gets its result,
because the edge runs an id at most once; the same id for a different command
is refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud import remote_sql as sql
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.bridge.downlink import Item, ItemKind, ItemState, now_ms
from bellhop_cloud.db.schema import audit_log, command_results, downlink, gateway_links, users
from bellhop_cloud.errors import CommandIdReused, GatewayOffline, NotFound
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.notify import queue as notify_queue
from bellhop_cloud.relay import Relay

__all__ = ["CommandRequest", "CommandStatus", "acknowledge", "command_status", "send_commands"]
__all__ += ["set_desired"]

ACK_WAIT_S: Final = 5.0  # an acknowledgement's or desired change's answer is waited for


@dataclass(frozen=True, slots=True)
class CommandRequest:
    command_id: str
    device_id: str
    name: str
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CommandStatus:
    command_id: str
    device_id: str
    name: str
    state: str  # queued, sent, succeeded, failed, timed_out, expired
    result: dict[str, Any] | None
    error: str | None
    requested_by: str
    requested_at: int
    expires_at: int
    completed_at: int | None

    @property
    def finished(self) -> bool:
        return self.state not in (ItemState.QUEUED.value, ItemState.SENT.value)


@dataclass(frozen=True, slots=True)
class _Request:
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


def _linked(hotel_id: str) -> sa.Select[Any]:
    """A gateway of the hotel holding a bridge, on any node (whose link rows are written
    in group commits, a second or so after the bridge opens)."""
    return (
        sa.select(gateway_links.c.gateway_id)
        .where(gateway_links.c.hotel_id == hotel_id, gateway_links.c.connected.is_(True))
        .limit(1)
    )


async def online(relay: Relay, conn: AsyncConnection, hotel_id: str) -> bool:
    """Whether a gateway of the hotel holds a bridge now, on this node or any other."""
    if relay.downlink.holds(hotel_id):
        return True
    return (await conn.execute(_linked(hotel_id))).first() is not None


# Who a request is by, as both sides show it ("cloud:<e-mail>"), remembered a minute.
_NAMES: dict[str, tuple[float, str]] = {}
NAMES_S: Final = 60.0
NAMES_MAX: Final = 10_000


def _known_name(user_id: str) -> str | None:
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


async def _who(conn: AsyncConnection, user_id: str) -> str:
    known = _known_name(user_id)
    if known is not None:
        return known
    return _name(user_id, await conn.run_sync(_email, user_id))


@dataclass(slots=True)
class _Sending:
    """A command request's transaction (`_queue_commands`): what it was given and what it
    found and did."""

    asker: _Request
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


def _queue_commands(conn: Connection, sending: _Sending) -> _Sending:
    """The downlink rows of the requests that are new and their audit entry, in the
    caller's transaction; the earlier rows and results of their ids read in it too."""
    hotel_id = sending.asker.hotel.hotel_id
    if sending.by is None:
        sending.by = _name(sending.asker.user_id, _email(conn, sending.asker.user_id))
    if conn.dialect.name == "postgresql" and _queued_alone(conn, sending):
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
            raise CommandIdReused(
                f"command_id {request.command_id!r} was already used for another command"
            )
    if rows:
        conn.execute(downlink.insert(), rows)
    conn.execute(audit_log.insert(), _entries(sending))
    # The results of ids asked before (a retry): nothing sends those again. A new row's
    # id needs no look, even if the LAN ran it first: the gateway answers it from its
    # record of that run.
    retried = [i for i in ids if i in earlier]
    for start in range(0, len(retried), CHUNK):
        found = conn.execute(
            sa.select(*_RESULT).where(
                command_results.c.hotel_id == hotel_id,
                command_results.c.command_id.in_(retried[start : start + CHUNK]),
            )
        )
        sending.results.update({row.command_id: dict(row._mapping) for row in found})
    return sending


def _new_item(sending: _Sending, request: CommandRequest) -> Item:
    body = {
        "name": request.name,
        "params": dict(request.params),
        "by": sending.by,
        "timeout_ms": int(sending.timeout_s * 1000),
    }
    kind, device = ItemKind.COMMAND, request.device_id
    return sending.asker.item(request.command_id, kind, device, body, ttl_s=sending.ttl_s)


def _entries(sending: _Sending) -> list[dict[str, Any]]:
    entry = sending.asker.entry(AuditAction.COMMAND_SENT, ("hotel", sending.asker.hotel.hotel_id))
    return audit.entry_rows(detail=sending.audit_detail, **entry)


def _queued_alone(conn: Connection, sending: _Sending) -> bool:
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
_RESULT: Final = (
    command_results.c.command_id,
    command_results.c.status,
    command_results.c.result,
    command_results.c.error,
    command_results.c.completed_at,
)


async def send_commands(
    relay: Relay,
    hotel: Hotel,
    user_id: str,
    requests: Sequence[CommandRequest],
    *,
    queue: bool,
    ttl_s: float,
    timeout_s: float,
    wait_s: float,
    fleet_id: str | None = None,
) -> list[CommandStatus]:
    """Queue the commands (or join earlier ones of the same id), announce them, and wait
    up to `wait_s` for their results (0: do not wait)."""
    held = relay.downlink.holds(hotel.hotel_id)
    sending = _Sending(
        asker=_Request(hotel, user_id),
        requests=requests,
        by=_known_name(user_id),
        check_online=not queue and not held,
        # This node holds the bridge and sends them the moment they are committed:
        # written as sent, they need no second write (downlink.nudge undoes it if the
        # send fails; a bridge that opens sends again whatever is not done).
        sent_at=now_ms() if held else None,
        timeout_s=timeout_s,
        ttl_s=ttl_s,
        audit_detail={
            "commands": [
                {"command_id": r.command_id, "device_id": r.device_id, "name": r.name}
                for r in requests[:100]
            ],
            "count": len(requests),
            "fleet_id": fleet_id,
            "mode": "queue" if queue else "wait",
        },
    )
    await relay.store.run(_queue_commands, sending)
    await relay.downlink.nudge(hotel.hotel_id, sending.queued, sent=held)
    ids = [r.command_id for r in requests]
    if wait_s <= 0:
        return await command_statuses(relay, hotel.hotel_id, ids)
    # Built from what is in hand: the requests as queued and the results the wait
    # brought, without reading them back.
    results = await relay.downlink.wait(hotel.hotel_id, ids, wait_s, known=sending.results)
    now = now_ms()
    asked = sending.asked
    return [_status(asked[r.command_id], results.get(r.command_id), now) for r in requests]


async def command_statuses(
    relay: Relay, hotel_id: str, command_ids: Sequence[str]
) -> list[CommandStatus]:
    """Where each command stands, in the order asked (unknown ids left out)."""
    async with relay.store.read() as conn:
        items = {
            row.item_id: row
            for row in await conn.execute(
                sa.select(downlink).where(
                    downlink.c.hotel_id == hotel_id, downlink.c.item_id.in_(command_ids)
                )
            )
        }
        done = {
            row.command_id: row
            for row in await conn.execute(
                sa.select(command_results).where(
                    command_results.c.hotel_id == hotel_id,
                    command_results.c.command_id.in_(command_ids),
                )
            )
        }
    now = now_ms()
    return [
        _status(items[c], None if c not in done else dict(done[c]._mapping), now)
        for c in command_ids
        if c in items and items[c].kind == ItemKind.COMMAND.value
    ]


def _status(item: Any, result: Mapping[str, Any] | None, now: int) -> CommandStatus:
    """Where a command stands: its downlink row (or the item just queued) and its result."""
    state = getattr(item, "state", ItemState.QUEUED.value)
    if result is not None:
        state = result["status"]
    elif state == ItemState.DONE.value:
        state = ItemState.SENT.value
    elif state in (ItemState.QUEUED.value, ItemState.SENT.value) and item.expires_at <= now:
        state = ItemState.EXPIRED.value
    return CommandStatus(
        command_id=item.item_id,
        device_id=item.device_id or "",
        name=item.body.get("name", ""),
        state=state,
        result=None if result is None else result["result"],
        error=None if result is None else result["error"],
        requested_by=item.body.get("by", ""),
        requested_at=item.requested_at,
        expires_at=item.expires_at,
        completed_at=None if result is None else result["completed_at"],
    )


async def command_status(relay: Relay, hotel_id: str, command_id: str) -> CommandStatus:
    found = await command_statuses(relay, hotel_id, [command_id])
    if not found:
        raise NotFound("no such command")
    return found[0]


async def acknowledge(
    relay: Relay, hotel: Hotel, user_id: str, alert: Any, note: str, *, ttl_s: float
) -> str:
    """Acknowledge `alert` (its relay row) on the edge; returns what happened:
    `already_acknowledged`, `already_cleared`, `acknowledged` (the edge confirmed it)
    or `queued` (the gateway is away, or has not confirmed yet)."""
    if alert.state == "acknowledged":
        return "already_acknowledged"
    if alert.state == "cleared":
        return "already_cleared"
    item_id = f"ack:{alert.alert_id}"
    asker = _Request(hotel, user_id)
    queued: list[Item] = []
    async with relay.store.write() as conn:
        up = await online(relay, conn, hotel.hotel_id)
        pending = (
            await conn.execute(
                sa.select(downlink.c.state).where(
                    downlink.c.hotel_id == hotel.hotel_id, downlink.c.item_id == item_id
                )
            )
        ).scalar()
        if pending is None:
            body = {"alert_id": alert.alert_id, "by": await _who(conn, user_id), "note": note}
            item = asker.item(item_id, ItemKind.ALERT_ACK, alert.device_id, body, ttl_s=ttl_s)
            await relay.downlink.queue(conn, item)
            queued.append(item)
            await asker.record(
                conn,
                AuditAction.ALERT_ACKNOWLEDGED,
                ("alert", alert.alert_id),
                {"hotel_id": hotel.hotel_id, "note": bool(note)},
            )
        # Escalation stops now, not when the gateway confirms (it may be away).
        await conn.run_sync(notify_queue.stop_escalation, hotel.hotel_id, alert.alert_id)
    await relay.downlink.nudge(hotel.hotel_id, queued)
    if up and await relay.downlink.until_done(hotel.hotel_id, item_id, ACK_WAIT_S):
        return "acknowledged"
    return "queued"


async def set_desired(
    relay: Relay,
    hotel: Hotel,
    user_id: str,
    device_id: str,
    values: Mapping[str, Any],
    *,
    base_version: int | None,
    ttl_s: float,
) -> tuple[str, str]:
    """Send desired state to the gateway, where it meets what staff set on site by the
    policy of docs/conflicts.md. Returns the change's id and `merged` (the gateway sent
    back the merged state, with each field's outcome) or `queued`."""
    change_id = f"desired:{uuid.uuid4().hex}"
    asker = _Request(hotel, user_id)
    async with relay.store.write() as conn:
        up = await online(relay, conn, hotel.hotel_id)
        body = {
            "values": dict(values),
            "base_version": base_version,
            "by": await _who(conn, user_id),
        }
        item = asker.item(change_id, ItemKind.DESIRED, device_id, body, ttl_s=ttl_s)
        await relay.downlink.queue(conn, item)
        await asker.record(
            conn,
            AuditAction.DESIRED_SET,
            ("device", device_id),
            {"hotel_id": hotel.hotel_id, "change_id": change_id, "fields": sorted(values)},
        )
    await relay.downlink.nudge(hotel.hotel_id, [item])
    if up and await relay.downlink.until_done(hotel.hotel_id, change_id, ACK_WAIT_S):
        return change_id, "merged"
    return change_id, "queued"
