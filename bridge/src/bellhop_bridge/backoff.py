"""Reconnect delays: capped exponential back-off with full jitter.

    delays = full_jitter(0.5, 60.0)
    await asyncio.sleep(next(delays))   # before each reconnect; a new generator after success

Full jitter (a uniformly random delay between 0 and the capped exponential)
spreads thousands of gateways reconnecting after a relay restart over the
whole window instead of in synchronised waves. `rng` is injectable so tests
can make delays deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

__all__ = ["full_jitter"]


def full_jitter(
    base_s: float, cap_s: float, *, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    if not 0 < base_s <= cap_s:
        raise ValueError("0 < base_s <= cap_s")
    attempt = 0
    while True:
        yield rng() * min(cap_s, base_s * 2**attempt)
        attempt = min(attempt + 1, 62)
