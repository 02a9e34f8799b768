"""Snapshots the relay asks for after its database was restored from a backup.

    await resync.request_all(conn, reason="restore", at=now)   # `bellhop cloud restore`
    resyncs = Resyncs(store)
    await resyncs.load()                 # once, before the endpoint serves
    resyncs.ask(conn, gateway_id, now)   # at a handshake: a Snapshot request if marked
    await resyncs.done(db, gateway_id)   # in the snapshot's own transaction

A restored database is behind what the edges know: lanes, state, alerts. A
gateway that sees the relay behind its own acknowledgements sends a snapshot
unasked (docs/bridge.md), but one that recorded nothing since the backup, or
whose acknowledgements were never stored, would not; the restore marks every
gateway instead, and the relay asks each for a snapshot at its next
connection whatever the lanes say. The marks are read once when the node
starts (a restore happens with the relay stopped), so a handshake costs no
query; a node that still holds a mark another node has cleared asks once
more, which is harmless (a snapshot is idempotent). A snapshot whose
transaction fails closes the bridge and leaves the row: the next start of a
node asks again.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa
from bellhop_bridge import RelayConnection
from sqlalchemy.ext.asyncio import AsyncConnection

from bellhop_cloud.db.schema import bridge_resyncs, gateways
from bellhop_cloud.db.store import Store

__all__ = ["Resyncs", "request_all"]

log = logging.getLogger(__name__)


async def request_all(conn: AsyncConnection, *, reason: str, at: datetime) -> int:
    """Mark every gateway not revoked for a snapshot; returns how many are marked."""
    await conn.execute(sa.delete(bridge_resyncs))
    stamp = sa.literal(at, bridge_resyncs.c.requested_at.type)
    chosen = sa.select(gateways.c.id, sa.literal(reason), stamp).where(
        gateways.c.revoked_at.is_(None)
    )
    await conn.execute(
        bridge_resyncs.insert().from_select(["gateway_id", "reason", "requested_at"], chosen)
    )
    count = await conn.scalar(sa.select(sa.func.count()).select_from(bridge_resyncs))
    return int(count or 0)


class Resyncs:
    """The gateways this node asks for a snapshot, as the database said at its start."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: set[str] = set()

    async def load(self) -> None:
        async with self.store.read() as conn:
            rows = await conn.execute(sa.select(bridge_resyncs.c.gateway_id))
            self.pending = {str(gateway_id) for (gateway_id,) in rows}
        if self.pending:
            log.info("bridge: %d gateways will be asked for a snapshot", len(self.pending))

    def ask(self, conn: RelayConnection, gateway_id: str, now: float) -> None:
        """Ask the gateway for a snapshot if the restore marked it."""
        if gateway_id in self.pending:
            conn.request_snapshot(f"restored-{gateway_id}", now)
            log.info("gateway %s: snapshot requested after a restore", gateway_id)

    async def done(self, conn: AsyncConnection, gateway_id: str) -> None:
        """The gateway's snapshot is applied in `conn`'s transaction: its mark goes with it."""
        if gateway_id in self.pending:
            mark = bridge_resyncs.c.gateway_id == gateway_id
            await conn.execute(sa.delete(bridge_resyncs).where(mark))
            self.pending.discard(gateway_id)
