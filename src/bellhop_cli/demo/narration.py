"""How the demo speaks: one line per beat, and the helpers its beats share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

__all__ = ["DemoError", "at_text", "now_ms", "poll", "say"]

T = TypeVar("T")


class DemoError(Exception):
    """A beat of the story did not happen; the demo says which and stops."""


def say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} | {text}", flush=True)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def at_text(ms: int) -> str:
    """A moment as the APIs write it: ISO 8601 UTC to the millisecond."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


async def poll(
    check: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = 30.0,
    every: float = 0.1,
) -> T:
    """Call `check` until it returns something; DemoError naming `what` past `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = await check()
                if found is not None:
                    return found
                await asyncio.sleep(every)
    except TimeoutError:
        raise DemoError(f"{what}: not within {timeout:g} s") from None
