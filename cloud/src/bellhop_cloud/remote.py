"""Remote control: commands and alert acknowledgements for a hotel's gateway.

    statuses = await remote.send_commands(relay, hotel, user_id, requests, ...)
    outcome, alert = await remote.acknowledge(relay, hotel, user_id, alert_id, note)

Each request is a `downlink` row, written with its audit entry in one
transaction, then announced to whichever node holds the hotel's bridge
(bridge/downlink.py). A command's transaction is one function run by the store
(remote_queue.py: one hop to its thread on SQLite, one statement on PostgreSQL when
it can), which also reads the results of a retry's ids, and is durable before the
request answers.

The command id is the idempotency key on every path: the same id again (here,
or first sent on the hotel LAN) joins the first request and gets its result,
because the edge runs an id at most once; the same id for a different command
is refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.audit import AuditAction
from bellhop_cloud.bridge.downlink import Item, ItemKind, ItemState, now_ms
from bellhop_cloud.db.schema import command_results, downlink, gateway_links
from bellhop_cloud.errors import NotFound
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.notify import queue as notify_queue
from bellhop_cloud.relay import Relay
from bellhop_cloud.remote_queue import (
    CommandRequest,
    Request,
    Sending,
    known_name,
    queue_alone,
    queue_commands,
    who_is,
)

__all__ = ["CommandRequest", "CommandStatus", "acknowledge", "command_status", "send_commands"]
__all__ += ["set_desired"]

ACK_WAIT_S: Final = 5.0  # an acknowledgement's or desired change's answer is waited for


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
    sending = Sending(
        asker=Request(hotel, user_id),
        requests=requests,
        by=known_name(user_id),
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
    # Committed without waiting for the disk, and made durable beside the delivery and
    # the wait, before the caller is told anything (docs/remote-control.md).
    alone = not relay.store.is_sqlite and len(requests) == 1
    try:
        if not (alone and await relay.store.run_alone(queue_alone, sending)):
            await relay.store.run_relaxed(queue_commands, sending)
    except IntegrityError as exc:
        if not _taken_meanwhile(exc):
            raise
        # A request of the same ids committed between this one's look and its insert
        # (PostgreSQL runs them side by side): all rolled back; the second look finds
        # those rows, and this request joins them, or is told the ids were reused.
        sending.asked.clear()
        sending.queued.clear()
        sending.results.clear()
        sending.tried_alone = True
        await relay.store.run_relaxed(queue_commands, sending)
    durable = asyncio.ensure_future(relay.store.flushed())
    try:
        statuses = await _delivered(relay, sending, queue_only=wait_s <= 0, wait_s=wait_s)
        await durable
    finally:
        if not durable.done():
            durable.cancel()
            await asyncio.gather(durable, return_exceptions=True)
    return statuses


async def _delivered(
    relay: Relay, sending: Sending, *, queue_only: bool, wait_s: float
) -> list[CommandStatus]:
    """Announce the commands `sending` queued and wait up to `wait_s` for their results
    (`queue_only`: their statuses as stored, without waiting)."""
    hotel_id, requests = sending.asker.hotel.hotel_id, sending.requests
    held = sending.sent_at is not None
    ids = [r.command_id for r in requests]
    if queue_only:
        await relay.downlink.nudge(hotel_id, sending.queued, sent=held)
        return await command_statuses(relay, hotel_id, ids)
    # The waiter is in place (its task's first step) before anything the nudge brings
    # back can be read: a result heard before it would wait for its next look at the
    # database. Built from what is in hand: the requests as queued and the results the
    # wait brought, without reading them back.
    waiting = asyncio.ensure_future(
        relay.downlink.wait(hotel_id, ids, wait_s, known=sending.results)
    )
    try:
        await relay.downlink.nudge(hotel_id, sending.queued, sent=held)
        results = await waiting
    finally:
        if not waiting.done():
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
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


def _taken_meanwhile(exc: IntegrityError) -> bool:
    """A unique key taken by a request that committed meanwhile (PostgreSQL's 23505)."""
    return getattr(exc.orig, "sqlstate", None) == "23505"


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
    try:
        up, queued = await _queue_ack(
            relay, hotel, user_id, alert, item_id=item_id, note=note, ttl_s=ttl_s
        )
    except IntegrityError as exc:
        if not _taken_meanwhile(exc):
            raise
        # Acknowledged by another request at the same moment: its row stands (and its
        # audit entry); this one's second look finds it.
        up, queued = await _queue_ack(
            relay, hotel, user_id, alert, item_id=item_id, note=note, ttl_s=ttl_s
        )
    await relay.downlink.nudge(hotel.hotel_id, queued)
    if up and await relay.downlink.until_done(hotel.hotel_id, item_id, ACK_WAIT_S):
        return "acknowledged"
    return "queued"


async def _queue_ack(
    relay: Relay, hotel: Hotel, user_id: str, alert: Any, *, item_id: str, note: str, ttl_s: float
) -> tuple[bool, list[Item]]:
    """The acknowledgement's downlink row and audit entry, unless one is on its way or
    done; whether a gateway of the hotel is connected, and the items queued."""
    asker = Request(hotel, user_id)
    queued: list[Item] = []
    async with relay.store.write() as conn:
        up = await online(relay, conn, hotel.hotel_id)
        where = (downlink.c.hotel_id == hotel.hotel_id, downlink.c.item_id == item_id)
        before = (await conn.execute(sa.select(downlink.c.state).where(*where))).scalar()
        if before == ItemState.EXPIRED.value:
            # Its time ran out before the gateway had it: a new acknowledgement replaces it.
            await conn.execute(downlink.delete().where(*where))
            before = None
        if before is None:
            body = {"alert_id": alert.alert_id, "by": await who_is(conn, user_id), "note": note}
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
    return up, queued


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
    asker = Request(hotel, user_id)
    async with relay.store.write() as conn:
        up = await online(relay, conn, hotel.hotel_id)
        body = {
            "values": dict(values),
            "base_version": base_version,
            "by": await who_is(conn, user_id),
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
