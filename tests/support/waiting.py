"""Bounded waits on a condition, for tests that wait on real processes.

    value = eventually(lambda: vm.samples("x"), 10, "the sample stored")
    await until(lambda: relay.logged("ready"), 10, "the relay ready")
    await until(read_rows, 10, "the rows written")       # an async check is awaited

Each polls its check until the answer is truthy and returns that answer, or
raises `NotWithin` naming what it waited for after `timeout` seconds. No
fixed sleep stands in for the condition: a loaded machine only makes the
wait longer, never the test wrong.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

__all__ = ["NotWithin", "eventually", "until"]

T = TypeVar("T")

EVERY_S = 0.02


class NotWithin(AssertionError, TimeoutError):
    """The condition did not hold in time: a failed expectation and a timeout alike."""


def eventually(
    check: Callable[[], T | None], timeout: float, what: str, *, every: float = EVERY_S
) -> T:
    """Call `check` until it returns something truthy and return that, at most `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        if time.monotonic() > deadline:
            raise NotWithin(f"{what}: not within {timeout:g} s")
        time.sleep(every)
    return answer


@overload
async def until(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, *, every: float = EVERY_S
) -> T: ...


@overload
async def until(
    check: Callable[[], T | None], timeout: float, what: str, *, every: float = EVERY_S
) -> T: ...


async def until(
    check: Callable[[], Any], timeout: float, what: str, *, every: float = EVERY_S
) -> Any:
    """As `eventually`, without blocking the event loop; an awaitable answer is awaited."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if answer:
            return answer
        if time.monotonic() > deadline:
            raise NotWithin(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(every)
