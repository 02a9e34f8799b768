"""Remote control: commands and alert acknowledgements for a hotel's gateway.

    statuses = await remote.send_commands(relay, hotel, user_id, requests, ...)
    outcome, alert = await remote.acknowledge(relay, hotel, user_id, alert_id, note)

Each request is a `downlink` row, written with its audit entry in one
transaction, then announced to whichever node holds the hotel's bridge
(bridge/downlink.py). The command id is the idempotency key on every path:
the same id again (here, or first sent on the hotel LAN) joins the first
request and gets its result, because the edge runs an id at most once; the
same id for a different command is refused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud import audit
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.bridge.downlink import Item, ItemKind, ItemState, now_ms
from bellhop_cloud.db.schema import command_results, downlink, gateway_links, users
from bellhop_cloud.errors import CommandIdReused, GatewayOffline, NotFound
from bellhop_cloud.hotels import Hotel
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

    async def record(
        self,
        conn: AsyncConnection,
        action: AuditAction,
        target: tuple[str, str],
        detail: dict[str, Any],
    ) -> None:
        """The request's audit entry, in the transaction that queues it."""
        await audit.record(
            conn,
            action,
            orgs=[self.hotel.org_id],
            actor_id=self.user_id,
            target_type=target[0],
            target_id=target[1],
            detail=detail,
        )


async def online(relay: Relay, conn: AsyncConnection, hotel_id: str) -> bool:
    """Whether a gateway of the hotel holds a bridge now, on this node or any other (whose
    link rows are written in group commits, a second or so after the bridge opens)."""
    if relay.downlink.holds(hotel_id):
        return True
    found = await conn.execute(
        sa.select(gateway_links.c.gateway_id)
        .where(gateway_links.c.hotel_id == hotel_id, gateway_links.c.connected.is_(True))
        .limit(1)
    )
    return found.first() is not None


# Who a request is by, as both sides show it ("cloud:<e-mail>"), remembered a minute.
_NAMES: dict[str, tuple[float, str]] = {}
NAMES_S: Final = 60.0
NAMES_MAX: Final = 10_000


async def _who(conn: AsyncConnection, user_id: str) -> str:
    now = time.monotonic()
    known = _NAMES.get(user_id)
    if known is not None and known[0] > now:
        return known[1]
    email = (await conn.execute(sa.select(users.c.email).where(users.c.id == user_id))).scalar()
    name = f"cloud:{email or user_id}"
    if len(_NAMES) >= NAMES_MAX:
        _NAMES.clear()
    _NAMES[user_id] = (now + NAMES_S, name)
    return name


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
    asker = _Request(hotel, user_id)
    async with relay.store.write() as conn:
        if not queue and not await online(relay, conn, hotel.hotel_id):
            raise GatewayOffline(
                "the hotel's gateway is not connected; send again with mode=queue to have"
                " the command delivered when it reconnects (before its expiry)"
            )
        by = await _who(conn, user_id)
        ids = [r.command_id for r in requests]
        earlier = {
            row.item_id: row
            for row in await conn.execute(
                sa.select(downlink).where(
                    downlink.c.hotel_id == hotel.hotel_id, downlink.c.item_id.in_(ids)
                )
            )
        }
        asked: dict[str, Any] = {}
        for request in requests:
            before = earlier.get(request.command_id)
            asked[request.command_id] = before
            if before is None:
                body = {
                    "name": request.name,
                    "params": dict(request.params),
                    "by": by,
                    "timeout_ms": int(timeout_s * 1000),
                }
                kind, device = ItemKind.COMMAND, request.device_id
                item = asker.item(request.command_id, kind, device, body, ttl_s=ttl_s)
                await relay.downlink.queue(conn, item)
                asked[request.command_id] = item
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
        await asker.record(
            conn,
            AuditAction.COMMAND_SENT,
            ("hotel", hotel.hotel_id),
            {
                "commands": [
                    {"command_id": r.command_id, "device_id": r.device_id, "name": r.name}
                    for r in requests[:100]
                ],
                "count": len(requests),
                "fleet_id": fleet_id,
                "mode": "queue" if queue else "wait",
            },
        )
    await relay.downlink.nudge(hotel.hotel_id, [a for a in asked.values() if isinstance(a, Item)])
    if wait_s <= 0:
        return await command_statuses(relay, hotel.hotel_id, ids)
    # Built from what is in hand: the requests as queued and the results the wait
    # brought, without reading them back.
    results = await relay.downlink.wait(hotel.hotel_id, ids, wait_s)
    now = now_ms()
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
