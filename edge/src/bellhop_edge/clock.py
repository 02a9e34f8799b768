"""The gateway's one wall clock: Unix milliseconds.

The cores never read it; drivers call `now_ms()` and pass the time in, so
tests drive the cores with whatever times they need.
"""

from __future__ import annotations

import time

__all__ = ["now_ms"]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
