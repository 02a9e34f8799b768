"""Sent marks of downlink items, written a moment after the send and only if still needed.

    marks = SentMarks(store)
    marks.later(hotel_id, item_ids, now)   # sent now; not marked so yet
    marks.answered(hotel_id, item_ids)     # answered meanwhile: no mark needed
    marks.pending(hotel_id)                # sent, mark still pending: not to send again
    await marks.flush()                    # write what is pending (the sweep, a stop)

A node sends items it did not write as sent (a nudge's from another node, or read from
the queue) and marks them `sent` so that the sweep does not send them again. Most commands
are answered within milliseconds, and an answered row is `done`: a mark written at once
would be a transaction on the path of nearly every command for nothing. So the marks of
items still unanswered after `AFTER_S` are written together, in one transaction per hotel.
Until then a command's resource reads `queued` though it left; a mark lost (a node that
dies first) only means the item is sent again, which the edge answers from its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bellhop_cloud.bridge.items import OUTSTANDING, ItemState
from bellhop_cloud.db.schema import downlink
from bellhop_cloud.db.store import Store, relaxed

__all__ = ["AFTER_S", "SentMarks"]

log = logging.getLogger(__name__)

AFTER_S: Final = 0.25  # below the downlink's SWEEP_S; the sweep flushes first in any case
CHUNK: Final = 500  # ids per UPDATE


class SentMarks:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._unmarked: dict[str, dict[str, int]] = {}  # hotel -> item id -> sent at (ms)
        # Being marked: taken by a flush whose transaction has not committed yet. Still
        # pending for the sweep, whose read would find those rows queued meanwhile.
        self._marking: dict[str, dict[str, int]] = {}
        self._task: asyncio.Task[None] | None = None

    def later(self, hotel_id: str, item_ids: Sequence[str], now: int) -> None:
        """The items went at `now`: marked sent in AFTER_S unless answered by then."""
        self._unmarked.setdefault(hotel_id, {}).update(dict.fromkeys(item_ids, now))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._soon(), name="downlink-sent-marks")

    def answered(self, hotel_id: str, item_ids: Iterable[str]) -> None:
        """Answered items need no mark: their rows are done."""
        pending = self._unmarked.get(hotel_id)
        if pending:
            for item_id in item_ids:
                pending.pop(item_id, None)

    def pending(self, hotel_id: str) -> Mapping[str, int]:
        """The hotel's items sent and not marked yet (the bridge has them)."""
        marking = self._marking.get(hotel_id)
        unmarked = self._unmarked.get(hotel_id, {})
        return {**marking, **unmarked} if marking else unmarked

    async def _soon(self) -> None:
        # Items sent while a flush runs find this task alive and start none: go on
        # until nothing is left, so that none waits for the sweep instead.
        while self._unmarked:
            await asyncio.sleep(AFTER_S)
            try:
                await self.flush()
            except Exception:  # the rows stay queued: the sweep sends them again, harmless
                log.warning("downlink: could not mark sent items", exc_info=True)

    async def flush(self) -> None:
        """Write the marks still pending, one transaction per hotel (and CHUNK ids)."""
        pending, self._unmarked = self._unmarked, {}
        for hotel_id, sent in pending.items():
            self._marking.setdefault(hotel_id, {}).update(sent)
        try:
            for hotel_id, sent in pending.items():
                ids, at = list(sent), min(sent.values(), default=0)  # when the first went
                for start in range(0, len(ids), CHUNK):
                    chunk = ids[start : start + CHUNK]
                    await self._store.run_relaxed(_mark_sent, hotel_id, chunk, at)
        finally:
            for hotel_id, sent in pending.items():
                marking = self._marking.get(hotel_id, {})
                for item_id in sent:
                    marking.pop(item_id, None)
                if not marking:
                    self._marking.pop(hotel_id, None)

    async def close(self) -> None:
        """Stop the timer and write what is pending (lost, the items are only sent again)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.flush()


# Built once: constructing a statement and its cache key costs more than running it.
_SENT: Final = (
    downlink.update()
    .where(
        downlink.c.hotel_id == sa.bindparam("m_hotel"),
        downlink.c.item_id.in_(sa.bindparam("m_ids", expanding=True)),
        downlink.c.state.in_(OUTSTANDING),
    )
    .values(
        state=ItemState.SENT.value,
        sent_at=sa.bindparam("m_at"),
        sends=downlink.c.sends + 1,
    )
)


def _mark_sent(conn: Connection, hotel_id: str, item_ids: list[str], now: int) -> None:
    """Items sent: without waiting for the disk, since one lost in a crash is only
    sent again (harmless); a row answered meanwhile (`done`) is left as it is."""
    relaxed(conn)
    conn.execute(_SENT, {"m_hotel": hotel_id, "m_ids": item_ids, "m_at": now})
