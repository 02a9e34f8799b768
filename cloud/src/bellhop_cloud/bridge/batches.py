"""A bridge connection's outbox batches and snapshots: applied in the order they were read,
by a task of the connection's own, while its reader goes on reading.

    applier = Applier(relay, resyncs)
    link.batches = Batches(functools.partial(applier.apply, link), failed)
    await link.batches.put(event)    # a BatchReceived or SnapshotReceived, from the reader
    await link.batches.close()       # the connection ended: what was not applied is dropped

Why a task of its own: a batch is one transaction whose commit waits for the disk, and
while the reader applied it, it read nothing; a gateway's direct answer to a remote
command that arrived meanwhile waited behind that commit (on a loaded host, most of the
time node A added to P3's two-node path). Now the reader takes the answer at once.

What does not change: one batch at a time per connection, in the order read, each
acknowledged to the gateway only after its commit (the acknowledgements leave in that
order); the gateway's window (which the connection enforces) bounds how many batches can
wait, and past WAITING_MAX waiting the reader waits too, as it did behind each one.
A batch not applied when the connection ends is not acknowledged, so the gateway sends it
again; one applied and not acknowledged is skipped as a repeat by its lanes' positions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

from bellhop_bridge import LANES, BatchReceived, SnapshotReceived

from bellhop_cloud.bridge import sync
from bellhop_cloud.bridge.resync import Resyncs
from bellhop_cloud.bridge.session import Link
from bellhop_cloud.live import plan_events
from bellhop_cloud.relay import Relay

__all__ = ["Applier", "Batches"]

log = logging.getLogger(__name__)

# A heartbeat's backlog figures and `last_seen` are recorded at most this often per gateway.
HEARD_EVERY_S: Final = 5.0
# Batches and snapshots read and not yet applied, per connection; past it the reader waits
# (the window bounds batches, but a gateway may send snapshots unasked, each up to a frame).
WAITING_MAX: Final = 8

Written = BatchReceived | SnapshotReceived


class Batches:
    """One connection's batches and snapshots, applied one at a time in the order put."""

    def __init__(
        self,
        apply: Callable[[Written], Awaitable[None]],
        failed: Callable[[Exception], None],
    ) -> None:
        self._apply = apply
        self._failed = failed
        self._queue: asyncio.Queue[Written] = asyncio.Queue(WAITING_MAX)
        self._task: asyncio.Task[None] | None = None
        self._applying = False
        self._closed = False

    async def put(self, event: Written) -> None:
        """Queue `event`; waits while WAITING_MAX are waiting (the reader reads no more)."""
        if self._closed:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="bridge-batches")
        await self._queue.put(event)

    async def _run(self) -> None:
        while not self._closed:
            event = await self._queue.get()
            self._applying = True
            try:
                await self._apply(event)
            except Exception as exc:  # nothing later is applied: the connection is closed
                self._closed = True
                self._failed(exc)
                while not self._queue.empty():  # a reader waiting to put goes on
                    self._queue.get_nowait()
            finally:
                self._applying = False

    async def close(self) -> None:
        """Stop once the batch being applied (if any) is over, not in its middle (a
        transaction cancelled there leaves its connection to the garbage collector); the
        batches still waiting are dropped, unacknowledged: the gateway sends them again."""
        self._closed = True
        if self._task is None:
            return
        if not self._applying:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class Applier:
    """What a node's bridges write: batches and snapshots, with their counts."""

    def __init__(self, relay: Relay, resyncs: Resyncs) -> None:
        self.relay = relay
        self.resyncs = resyncs
        self.applied_events = 0
        self.rejected_events = 0
        self.snapshots = 0

    async def apply(self, link: Link, event: Written) -> None:
        if isinstance(event, BatchReceived):
            await self.batch(link, event, asyncio.get_running_loop().time())
        else:
            await self.snapshot(link, event)

    async def batch(self, link: Link, event: BatchReceived, now: float) -> None:
        identity = link.identity
        assert identity is not None
        # `last_seen` moves at most every few seconds: two updates per batch otherwise.
        seen = now - link.seen_at >= HEARD_EVERY_S
        # One transaction; the lanes' row lock orders it against any other connection
        # of the gateway.
        applied = await self.relay.store.run(
            sync.apply_batch,
            identity.gateway_id,
            identity.hotel_id,
            event.events,
            datetime.now(UTC),
            seen=seen,
            stored=self.relay.downlink.stored(identity.hotel_id),
        )
        plan = applied.plan
        if seen:
            link.seen_at = now
        await self.relay.live.tell(identity.hotel_id, plan_events(plan))
        await self.relay.downlink.finished(identity.hotel_id, applied.answered)
        self.applied_events += len(plan.telemetry) + len(plan.events)
        if plan.rejected:
            self.rejected_events += len(plan.rejected)
            log.warning(
                "gateway %s: %d events refused (%s)",
                identity.gateway_id,
                len(plan.rejected),
                plan.rejected[0],
            )
        for lane in LANES:
            if lane in applied.highest:
                link.conn.ack(lane, applied.highest[lane], now)

    async def snapshot(self, link: Link, event: SnapshotReceived) -> None:
        identity = link.identity
        assert identity is not None
        async with self.relay.store.write() as db:
            await sync.apply_snapshot(db, identity.gateway_id, identity.hotel_id, event.snapshot)
            await self.resyncs.done(db, identity.gateway_id)
        self.snapshots += 1
        log.info("gateway %s: snapshot applied", identity.gateway_id)
