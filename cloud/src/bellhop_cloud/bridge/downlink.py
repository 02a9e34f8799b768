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
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.bridge import sync
from bellhop_cloud.bridge.items import (
    OUTSTANDING,
    Item,
    ItemKind,
    ItemState,
    carried,
    carry,
    frame_of,
    now_ms,
)
from bellhop_cloud.bridge.plan import Plan
from bellhop_cloud.bridge.sent_marks import SentMarks
from bellhop_cloud.bus import MESSAGE_MAX, Bus
from bellhop_cloud.db.schema import command_results, downlink
from bellhop_cloud.db.store import Store, relaxed

# The items' names stay importable from here, where they were first.
__all__ = ["OUTSTANDING", "Downlink", "Item", "ItemKind", "ItemState", "now_ms"]

log = logging.getLogger(__name__)

SWEEP_S: Final = 2.0  # how often a node looks for items nobody nudged it about
POLL_S: Final = 1.0  # a waiter looks at the database at least this often
CHUNK: Final = 500  # ids per IN (...) query
FRESH_MAX: Final = 10_000  # results kept for this node's waiters
NUDGES: Final = "downlink"
# A nudge carries the items it announces up to this size (a command or a few), so that
# the node holding the bridge sends them without reading them back; bigger, it names
# the hotel only and that node reads them. Within the bus's MESSAGE_MAX.
CARRY_MAX: Final = 4096
RESULTS: Final = "results"
# Direct answers stored at once beside the bridge's other work, at most this many at a time
# on a node; past it, the bridge's reader stores the next one itself (and so waits).
ANSWERING_MAX: Final = 64
# What a result's message on the bus carries, for the waiters of other nodes.
_RESULT_KEYS: Final = ("status", "result", "error", "completed_at")


# Sends frames down a hotel's bridge on this node; False when this node holds none.
Sender = Callable[[str, Sequence[bridge_pb2.Frame]], Awaitable[bool]]


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
        # Items sent here and not written so: marked a moment later, if still unanswered.
        self.marks = SentMarks(store)
        self._answering = 0
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
            await self.marks.close()

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
            try:
                await self._unsent(hotel_id, items)
            except Exception:  # committed all the same: a bridge that opens sends it
                log.exception("downlink: could not queue again what hotel %s missed", hotel_id)
        message = hotel_id
        if items:
            with_items = f"{hotel_id} {carry(items)}"
            if len(with_items.encode()) <= CARRY_MAX:
                message = with_items
        await self._bus.publish(NUDGES, message)

    def holds(self, hotel_id: str) -> bool:
        """Whether this node holds an open bridge of the hotel now."""
        return hotel_id in self._held()

    def _nudged(self, message: str) -> None:
        hotel_id, _, items = message.partition(" ")
        if hotel_id in self._held():
            # The items it carries (committed before the nudge), else what is queued.
            self._spawn(self.deliver(hotel_id, items=carried(hotel_id, items) if items else ()))

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
        these instead of what the database holds (`marked`: their rows say sent); those
        past their expiry are left out, as the database's would be."""
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
        rows: Sequence[Item | Row[Any]] = [i for i in items if i.expires_at > now]
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
            # Sent moments ago on this bridge and not marked yet: not again (a bridge
            # that opens gets everything not done, these too).
            pending = {} if resend else self.marks.pending(hotel_id)
            rows = [row for row in rows if row.item_id not in pending]
        if not rows:
            return 0
        if not await self._sender(hotel_id, [frame_of(row) for row in rows]):
            if marked:
                await self._unsent(hotel_id, items)
            return 0
        self.sent += len(rows)
        if not marked:
            self.marks.later(hotel_id, [row.item_id for row in rows], now)
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
                await self.marks.flush()  # what this node sent is not queued any more
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
    async def answered(self, hotel_id: str, answer: bridge_pb2.RemoteCommandResult) -> None:
        """A gateway's direct answer, from its bridge's reader: stored and its waiters woken
        in a task of its own, so that the reader goes on to the outbox batch that follows it
        at once (that batch waits for the disk; the sooner it ends, the less the next
        answer waits behind it). The batch may be applied before or after the answer: both
        write the same row."""
        if self._answering >= ANSWERING_MAX:  # back-pressure on a gateway that floods
            await self.received(hotel_id, answer)
            return
        self._answering += 1
        self._spawn(self._store_answer(hotel_id, answer))

    async def _store_answer(self, hotel_id: str, answer: bridge_pb2.RemoteCommandResult) -> None:
        try:
            await self.received(hotel_id, answer)
        except Exception:  # the outbox brings it durably; a waiter reads it then
            log.warning("hotel %s: a direct answer was not stored", hotel_id, exc_info=True)
        finally:
            self._answering -= 1

    async def received(self, hotel_id: str, answer: bridge_pb2.RemoteCommandResult) -> None:
        """A gateway's direct answer to a command: checked as its outbox events are,
        stored, and its waiters woken. A refusal of a reused id comes by the answer's
        flag (`Plan.answer`), which the result alone does not carry."""
        plan = Plan.answer(answer, hotel_id)
        if plan.rejected:
            log.warning("hotel %s: a command result refused (%s)", hotel_id, plan.rejected[0])
            return
        if len(plan.commands) == 1:
            # One result is one statement on PostgreSQL (answers.results: the result with
            # its row done, or a refused id's row deleted): run alone, one round trip.
            await self._store.run_alone(_store_results, plan)
        else:
            await self._store.run_relaxed(_store_results, plan)
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
        self.marks.answered(hotel_id, command_ids)
        for command_id, row in (results or {}).items():
            self._remember(hotel_id, command_id, row)
        self._wake(hotel_id, command_ids)
        if self.on_result is not None:
            self.on_result(hotel_id, command_ids)
        for command_id in command_ids:
            stored = (results or {}).get(command_id)
            if stored is None:
                await self._bus.publish(RESULTS, f"{hotel_id} {command_id}")
                continue
            # The result itself, so that another node's waiter need not read it (when
            # it fits in a bus message; otherwise that waiter reads it).
            heard = json.dumps({k: stored[k] for k in _RESULT_KEYS}, separators=(",", ":"))
            message = f"{hotel_id} {command_id} {heard}"
            if len(message.encode()) > MESSAGE_MAX:
                message = f"{hotel_id} {command_id}"
            await self._bus.publish(RESULTS, message)

    def stored(self, hotel_id: str) -> Callable[[str], Mapping[str, Any] | None]:
        """The result of a command of `hotel_id` as this node stored it lately, by id
        (sync.apply_batch; called from the store's thread: one dict lookup)."""
        fresh = self._fresh
        return lambda command_id: fresh.get((hotel_id, command_id))

    def _result_heard(self, message: str) -> None:
        hotel_id, _, rest = message.partition(" ")
        command_id, _, heard = rest.partition(" ")
        # Kept for this node's waiters, unless it stored the row itself (whole, as
        # sync.apply_batch compares it).
        key = (hotel_id, command_id)
        self.marks.answered(hotel_id, [command_id])
        if heard and key in self._waiters and key not in self._fresh:
            self._remember(hotel_id, command_id, json.loads(heard))
        self._wake(hotel_id, [command_id])

    def _remember(self, hotel_id: str, command_id: str, row: Mapping[str, Any]) -> None:
        self._fresh[(hotel_id, command_id)] = dict(row)
        if len(self._fresh) > FRESH_MAX:
            del self._fresh[next(iter(self._fresh))]

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
        first = True
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
                # A first look unless `known` took its place; then one at each wake-up
                # that brought no result of this node's.
                if left and ((known is None) if first else not fresh):
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


def _store_results(conn: Connection, plan: Plan) -> None:
    """A gateway's direct answers (sync.results), committed without waiting for the disk:
    the same results come in its outbox, applied in a transaction that does wait (and
    acknowledged to the gateway only then)."""
    relaxed(conn)
    sync.results(conn, plan)
