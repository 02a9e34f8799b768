"""What the relay tells a hotel's gateway: remote commands and alert acknowledgements.

    downlink = Downlink(store, bus)
    async with store.write() as db:
        await downlink.queue(db, item)            # with the request's audit entry
    await downlink.nudge(hotel_id)                # whichever node holds the bridge sends it
    row = await downlink.wait(hotel_id, command_id, timeout_s)

Every item is a row first (`downlink` table), so it survives this node's
death: the node holding the hotel's bridge sends queued items when nudged,
when it finds them on its own (every `SWEEP_S`), and sends everything not yet
done again when a bridge opens, since a node that sent an item may have died
before its gateway answered. Sending an item twice is harmless by design: the
edge runs a command id at most once and answers a repeat with the first result,
and acknowledging an acknowledged alert changes nothing. An item past its
expiry is never sent (and the edge refuses an expired command itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.bridge import sync
from bellhop_cloud.bridge.plan import Plan
from bellhop_cloud.bus import Bus
from bellhop_cloud.db.schema import command_results, downlink
from bellhop_cloud.db.store import Store

__all__ = ["Downlink", "Item", "ItemKind", "ItemState"]

log = logging.getLogger(__name__)

SWEEP_S: Final = 2.0  # how often a node looks for items nobody nudged it about
POLL_S: Final = 1.0  # a waiter looks at the database at least this often
CHUNK: Final = 500  # ids per IN (...) query
FRESH_MAX: Final = 10_000  # results kept for this node's waiters
NUDGES: Final = "downlink"
RESULTS: Final = "results"


class ItemKind(StrEnum):
    COMMAND = "command"
    ALERT_ACK = "alert_ack"
    DESIRED = "desired"


class ItemState(StrEnum):
    QUEUED = "queued"  # not sent yet
    SENT = "sent"  # sent at least once, no answer yet
    DONE = "done"  # answered: a command's result, or the alert's acknowledgement came back
    EXPIRED = "expired"  # its time ran out before it was done


OUTSTANDING: Final = (ItemState.QUEUED.value, ItemState.SENT.value)


@dataclass(frozen=True, slots=True)
class Item:
    hotel_id: str
    item_id: str  # a command's id, "ack:<alert id>", or a desired change's "desired:<id>"
    kind: ItemKind
    device_id: str | None
    body: dict[str, Any]
    requested_by: str
    requested_at: int
    expires_at: int

    def row(self, sent_at: int | None = None) -> dict[str, Any]:
        """Its downlink row: queued, or already sent at `sent_at` (by the node that queued
        it and holds the hotel's bridge, which sends it as soon as it is committed)."""
        return {
            "hotel_id": self.hotel_id,
            "item_id": self.item_id,
            "kind": self.kind.value,
            "device_id": self.device_id,
            "body": self.body,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "state": ItemState.QUEUED.value if sent_at is None else ItemState.SENT.value,
            "sent_at": sent_at,
            "sends": 0 if sent_at is None else 1,
        }


# Sends frames down a hotel's bridge on this node; False when this node holds none.
Sender = Callable[[str, Sequence[bridge_pb2.Frame]], Awaitable[bool]]


def now_ms() -> int:
    return int(time.time() * 1000)


def frame_of(row: Item | Row[Any]) -> bridge_pb2.Frame:
    """The bridge frame of a downlink row (or of an item just queued)."""
    body = row.body
    if row.kind == ItemKind.COMMAND:
        command = common_pb2.Command(
            command_id=row.item_id, device_id=row.device_id or "", name=body["name"]
        )
        params = Struct()
        params.update(body.get("params") or {})
        command.params.CopyFrom(params)
        command.expires_at.FromMilliseconds(row.expires_at)
        remote = bridge_pb2.RemoteCommand(
            command=command, requested_by=body["by"], timeout_ms=int(body["timeout_ms"])
        )
        return bridge_pb2.Frame(command=remote)
    if row.kind == ItemKind.DESIRED:
        values = Struct()
        values.update(body["values"])
        change = bridge_pb2.DesiredStateChange(
            change_id=row.item_id,
            device_id=row.device_id or "",
            values=values,
            base_version=int(body.get("base_version") or 0),
            set_by=body["by"],
        )
        change.set_at.FromMilliseconds(row.requested_at)
        return bridge_pb2.Frame(desired_change=change)
    ack = bridge_pb2.AlertAcknowledgement(
        alert_id=body["alert_id"], acknowledged_by=body["by"], note=body.get("note") or ""
    )
    ack.acknowledged_at.FromMilliseconds(row.requested_at)
    return bridge_pb2.Frame(alert_acknowledgement=ack)


class Downlink:
    """The relay's queue towards gateways, shared by every node through the database."""

    def __init__(self, store: Store, bus: Bus) -> None:
        self._store = store
        self._bus = bus
        self._sender: Sender | None = None
        self._held: Callable[[], Collection[str]] = frozenset
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiters: dict[tuple[str, str], set[asyncio.Event]] = {}
        # Results this node stored lately, for its own waiters: no read after the wake-up.
        self._fresh: dict[tuple[str, str], dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_result: Callable[[str, Sequence[str]], None] | None = None
        self.sent = 0
        bus.on(NUDGES, self._nudged)
        bus.on(RESULTS, self._result_heard)

    # -- wiring ---------------------------------------------------------------------
    def attach(self, sender: Sender, held: Callable[[], Collection[str]]) -> None:
        """The bridge endpoint of this node: how to send, and which hotels it holds."""
        self._sender, self._held = sender, held

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        sweeper = asyncio.create_task(self._sweep(), name="downlink-sweep")
        try:
            yield self
        finally:
            sweeper.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(sweeper, *self._tasks, return_exceptions=True)

    # -- queueing -------------------------------------------------------------------
    async def queue(self, conn: AsyncConnection, item: Item) -> None:
        """Add `item` in the caller's transaction (with its audit entry)."""
        await conn.execute(downlink.insert().values(**item.row()))

    async def nudge(self, hotel_id: str, items: Sequence[Item] = (), *, sent: bool = False) -> None:
        """Something is queued for `hotel_id`: whichever node holds its bridge sends it.

        When this node holds it, `items` (just committed) go at once, without being
        read back; `sent`: their rows were written as sent already (`Item.row`), so
        they are not marked again unless sending fails. A hotel whose bridge is
        elsewhere is nudged on the bus.
        """
        if items and self.holds(hotel_id):
            await self.deliver(hotel_id, items=items, marked=sent)
            return
        if sent:  # written as sent by a node that no longer holds the bridge
            await self._unsent(hotel_id, items)
        await self._bus.publish(NUDGES, hotel_id)

    def holds(self, hotel_id: str) -> bool:
        """Whether this node holds an open bridge of the hotel now."""
        return hotel_id in self._held()

    def _nudged(self, hotel_id: str) -> None:
        if hotel_id in self._held():
            self._spawn(self.deliver(hotel_id))

    def opened(self, hotel_id: str) -> None:
        """A bridge of `hotel_id` opened here: everything not done goes to it."""
        self._spawn(self.deliver(hotel_id, resend=True))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending --------------------------------------------------------------------
    async def deliver(
        self,
        hotel_id: str,
        *,
        resend: bool = False,
        items: Sequence[Item] = (),
        marked: bool = False,
    ) -> int:
        """Send what is queued for `hotel_id` (with `resend`, what was sent and not done
        too) if this node holds its bridge; returns how many items were sent. `items`:
        these instead of what the database holds (`marked`: their rows say sent)."""
        if self._sender is None:
            return 0
        # One delivery per hotel at a time, so items leave in the order they were queued.
        lock = self._locks.setdefault(hotel_id, asyncio.Lock())
        try:
            async with lock:
                return await self._deliver(hotel_id, resend, items, marked)
        except Exception:  # the sweep tries again; a nudge must not kill the node's loop
            log.exception("downlink: could not deliver to hotel %s", hotel_id)
            return 0

    async def _deliver(
        self, hotel_id: str, resend: bool, items: Sequence[Item], marked: bool
    ) -> int:
        assert self._sender is not None
        now = now_ms()
        states = OUTSTANDING if resend else (ItemState.QUEUED.value,)
        rows: Sequence[Item | Row[Any]] = items
        if not items:
            async with self._store.read() as conn:
                rows = (
                    await conn.execute(
                        sa.select(downlink)
                        .where(
                            downlink.c.hotel_id == hotel_id,
                            downlink.c.state.in_(states),
                            downlink.c.expires_at > now,
                        )
                        .order_by(downlink.c.requested_at, downlink.c.item_id)
                        .limit(1000)
                    )
                ).all()
        if not rows:
            return 0
        if not await self._sender(hotel_id, [frame_of(row) for row in rows]):
            if marked:
                await self._unsent(hotel_id, items)
            return 0
        self.sent += len(rows)
        if marked:
            return len(rows)
        async with self._store.write() as conn:
            await conn.execute(
                downlink.update()
                .where(
                    downlink.c.hotel_id == hotel_id,
                    downlink.c.item_id.in_([row.item_id for row in rows]),
                    downlink.c.state.in_(OUTSTANDING),
                )
                .values(state=ItemState.SENT.value, sent_at=now, sends=downlink.c.sends + 1)
            )
        return len(rows)

    async def _unsent(self, hotel_id: str, items: Sequence[Item]) -> None:
        """Items written as sent did not go (the bridge closed meanwhile): queued again, so
        that the sweep sends them too, not only the next bridge's opening."""
        async with self._store.write() as conn:
            await conn.execute(
                downlink.update()
                .where(
                    downlink.c.hotel_id == hotel_id,
                    downlink.c.item_id.in_([item.item_id for item in items]),
                    downlink.c.state == ItemState.SENT.value,
                    downlink.c.sends == 1,
                )
                .values(state=ItemState.QUEUED.value, sent_at=None, sends=0)
            )

    async def _sweep(self) -> None:
        """Expire what ran out of time; send what no nudge announced (a lost nudge, a
        node that queued and died before nudging)."""
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                now = now_ms()
                async with self._store.write() as conn:
                    await conn.execute(
                        downlink.update()
                        .where(downlink.c.state.in_(OUTSTANDING), downlink.c.expires_at <= now)
                        .values(state=ItemState.EXPIRED.value)
                    )
                async with self._store.read() as conn:
                    waiting = (
                        await conn.execute(
                            sa.select(downlink.c.hotel_id)
                            .where(downlink.c.state == ItemState.QUEUED.value)
                            .distinct()
                            .limit(10_000)
                        )
                    ).scalars()
                    hotels = set(waiting) & set(self._held())
                for hotel_id in hotels:
                    await self.deliver(hotel_id)
            except Exception:  # the database is away: try again next time
                log.warning("downlink: sweep failed", exc_info=True)

    # -- answers --------------------------------------------------------------------
    async def received(self, hotel_id: str, answer: bridge_pb2.RemoteCommandResult) -> None:
        """A gateway's direct answer to a command: checked as its outbox events are,
        stored, and its waiters woken."""
        carried = bridge_pb2.OutboxEvent(command_result=answer.result)
        plan = Plan.of([carried], hotel_id)
        if plan.rejected:
            log.warning("hotel %s: a command result refused (%s)", hotel_id, plan.rejected[0])
            return
        await self._store.run(sync.results, plan)
        await self.finished(hotel_id, list(plan.commands), plan.commands)

    async def finished(
        self,
        hotel_id: str,
        command_ids: Sequence[str],
        results: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """These items are answered (a command's result stored, an acknowledgement or a
        desired change taken): wake their waiters on every node (with `results`, commands'
        rows as stored: this node's waiters take them as they are)."""
        if not command_ids:
            return
        for command_id, row in (results or {}).items():
            self._fresh[(hotel_id, command_id)] = dict(row)
            if len(self._fresh) > FRESH_MAX:
                del self._fresh[next(iter(self._fresh))]
        self._wake(hotel_id, command_ids)
        if self.on_result is not None:
            self.on_result(hotel_id, command_ids)
        for command_id in command_ids:
            await self._bus.publish(RESULTS, f"{hotel_id} {command_id}")

    def stored(self, hotel_id: str) -> Callable[[str], Mapping[str, Any] | None]:
        """The result of a command of `hotel_id` as this node stored it lately, by id
        (sync.apply_batch; called from the store's thread: one dict lookup)."""
        fresh = self._fresh
        return lambda command_id: fresh.get((hotel_id, command_id))

    def _result_heard(self, message: str) -> None:
        hotel_id, _, command_id = message.partition(" ")
        self._wake(hotel_id, [command_id])

    def _wake(self, hotel_id: str, command_ids: Iterable[str]) -> None:
        for command_id in command_ids:
            for event in self._waiters.get((hotel_id, command_id), ()):
                event.set()

    async def wait(
        self,
        hotel_id: str,
        command_ids: Sequence[str],
        timeout_s: float,
        known: Mapping[str, dict[str, Any]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """The commands' results (status, result, error, completed_at) as they are stored,
        once every one has one or `timeout_s` has passed. However many commands (a fleet),
        one query a wake-up at most (in chunks of ids), none for results this node stored.
        `known`: the results stored before the wait (read in the transaction that queued
        the commands), instead of a first look at the database."""
        keys = [(hotel_id, c) for c in command_ids]
        event = asyncio.Event()
        for key in keys:
            self._waiters.setdefault(key, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        found: dict[str, dict[str, Any]] = {}
        if known is not None:
            found.update((c, dict(known[c])) for c in command_ids if c in known)
        left = set(command_ids) - found.keys()
        first = known is None
        try:
            while True:
                event.clear()
                fresh = False
                for command_id in list(left):
                    row = self._fresh.get((hotel_id, command_id))
                    if row is not None:
                        found[command_id] = row
                        left.discard(command_id)
                        fresh = True
                if left and (first or not fresh):
                    # Earlier results (a retry), and other nodes' (a nudge can be lost).
                    read = await self._answered(hotel_id, left)
                    found.update(read)
                    left -= read.keys()
                first = False
                remaining = deadline - loop.time()
                if not left or remaining <= 0:
                    return found
                # A nudge can be lost between nodes: the database is looked at anyway.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, POLL_S)):
                        await event.wait()
        finally:
            for key in keys:
                self._forget(key, event)

    async def until_done(self, hotel_id: str, item_id: str, within_s: float) -> bool:
        """Whether the gateway's answer to the item is stored within `within_s`: woken by
        `finished` on any node, the database looked at on each wake-up and every POLL_S."""
        key = (hotel_id, item_id)
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        try:
            while True:
                event.clear()
                async with self._store.read() as conn:
                    state = (
                        await conn.execute(
                            sa.select(downlink.c.state).where(
                                downlink.c.hotel_id == hotel_id, downlink.c.item_id == item_id
                            )
                        )
                    ).scalar()
                remaining = deadline - loop.time()
                if state == ItemState.DONE.value or remaining <= 0:
                    return state == ItemState.DONE.value
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(remaining, POLL_S)):
                        await event.wait()
        finally:
            self._forget(key, event)

    def _forget(self, key: tuple[str, str], event: asyncio.Event) -> None:
        events = self._waiters.get(key)
        if events is not None:
            events.discard(event)
            if not events:
                del self._waiters[key]

    async def _answered(self, hotel_id: str, command_ids: set[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        ids = sorted(command_ids)
        columns = (
            command_results.c.command_id,
            command_results.c.status,
            command_results.c.result,
            command_results.c.error,
            command_results.c.completed_at,
        )
        async with self._store.read() as conn:
            for start in range(0, len(ids), CHUNK):
                rows = await conn.execute(
                    sa.select(*columns).where(
                        command_results.c.hotel_id == hotel_id,
                        command_results.c.command_id.in_(ids[start : start + CHUNK]),
                    )
                )
                found.update({row.command_id: dict(row._mapping) for row in rows})
        return found
