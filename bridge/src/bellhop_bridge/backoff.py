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
from typing import Final

# A relay that closed with `shutting_down` is restarting and is back within seconds: for
# this long after that close, delays are capped lower, so that all of a relay's gateways
# are back within a minute instead of some waiting out the full cap. 30 s was tried:
# slower (50 s for 10,000 gateways) and no fewer connection timeouts (docs/benchmarks.md).
RESTART_CAP_S: Final = 15.0
RESTART_WINDOW_S: Final = 120.0

__all__ = ["RESTART_CAP_S", "RESTART_WINDOW_S", "after_restart", "full_jitter"]


def full_jitter(
    base_s: float, cap_s: float, *, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    if not 0 < base_s <= cap_s:
        raise ValueError("0 < base_s <= cap_s")
    attempt = 0
    while True:
        yield rng() * min(cap_s, base_s * 2**attempt)
        attempt = min(attempt + 1, 62)


def after_restart(
    base_s: float, cap_s: float, *, rng: Callable[[], float] = random.random
) -> Iterator[float]:
    """Delays after the relay said it is shutting down: full jitter capped at
    RESTART_CAP_S for about RESTART_WINDOW_S, then `full_jitter(base_s, cap_s)`."""
    waited = 0.0
    for delay in full_jitter(base_s, max(base_s, min(cap_s, RESTART_CAP_S)), rng=rng):
        if waited >= RESTART_WINDOW_S:
            break
        waited += delay
        yield delay
    yield from full_jitter(base_s, cap_s, rng=rng)
