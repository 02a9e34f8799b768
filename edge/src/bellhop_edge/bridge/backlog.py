"""The outbox read for the bridge's sender: the next events after each lane's cursor.

Blocking (SQLite): `read` runs in a thread; `cannot_fit` runs it there itself.
"""

from __future__ import annotations

import asyncio

from bellhop_bridge import LANES
from bellhop_bridge.frames import MAX_FRAME_BYTES

from bellhop_edge.store import EdgeStore

__all__ = ["cannot_fit", "read"]


def read(
    store: EdgeStore, cursors: dict[int, int], limit: int, bytes_left: int
) -> list[tuple[int, int, bytes]]:
    """Up to `limit` events (and `bytes_left` bytes), priority lane first. In a thread."""
    out: list[tuple[int, int, bytes]] = []
    for lane in LANES:
        if len(out) >= limit:
            break
        for entry in store.outbox_after(cursors[lane], limit - len(out), lane):
            if len(entry.data) > bytes_left:
                return out
            bytes_left -= len(entry.data)
            out.append((lane, entry.seq, entry.data))
    return out


async def cannot_fit(store: EdgeStore, cursors: dict[int, int], bytes_left: int) -> bool:
    """Whether the next event to send is larger than `bytes_left` (the whole window, when
    nothing is in flight: then the bridge can never send it)."""
    first = await asyncio.to_thread(read, store, cursors, 1, MAX_FRAME_BYTES)
    return bool(first) and len(first[0][2]) > bytes_left
