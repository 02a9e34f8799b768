"""Live bridges of revoked gateways are cut within an interval of their revocation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bellhop_cloud import enrolment
from bellhop_cloud.db.store import Store

__all__ = ["watch"]

log = logging.getLogger(__name__)


async def watch(
    store: Store, every_s: float, *, live: Callable[[], list[str]], cut: Callable[[str], None]
) -> None:
    """Every `every_s`: which of the `live` gateways are revoked? `cut` each of them.

    One query per interval for the whole node, whatever the number of bridges.
    """
    while True:
        await asyncio.sleep(every_s)
        gateways = live()
        if not gateways:
            continue
        try:
            revoked = await enrolment.revoked_among(store, gateways)
        except Exception:  # the database is away: the watcher must outlive it
            log.warning("bridge: cannot check revocations now", exc_info=True)
            continue
        for gateway_id in revoked:
            cut(gateway_id)
