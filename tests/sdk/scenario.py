"""What the SDK's transport tests share: waiting on a condition, and catching a state change
on an event stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from bellhop_sdk.models import Event, Gap

from tests.sdk.conftest import THERMOSTAT, SdkSite
from tests.support.waiting import until

T = TypeVar("T")
READ_EVERY_S = 0.05
REPORT_EVERY_S = 0.5


async def eventually(read: Callable[[], Awaitable[T]], what: str, timeout: float = 20.0) -> T:
    """`read()` until it is truthy, and return it; AssertionError naming `what` after `timeout`."""
    return await until(read, timeout, what, every=READ_EVERY_S)


async def first_state_event(
    site: SdkSite,
    stream: AsyncIterator[Event | Gap],
    timeout: float = 20.0,
    device_id: str = THERMOSTAT,
) -> tuple[Event, dict[int, dict[str, Any]]]:
    """The first state event of `device_id` that `stream` gives for a report made after it
    was opened. A stream has no "subscribed" signal on every path, so the device reports
    every half second until one arrives; returns it and every report made (by time)."""
    reports: dict[int, dict[str, Any]] = {}

    async def read() -> Event:
        async for item in stream:
            if (
                isinstance(item, Event)
                and item.kind == "state"
                and item.key[1] == device_id
                and int(item.key[2]) in reports
            ):
                return item
        raise AssertionError("the stream ended")

    reader = asyncio.create_task(read())
    try:
        async with asyncio.timeout(timeout):
            n = 0
            while not reader.done():
                n += 1
                values = {"temperature": 20 + n / 10, "setpoint": 21}
                ts = await site.devices.report_state(device_id, values)
                reports[ts] = values
                await asyncio.wait({reader}, timeout=REPORT_EVERY_S)
            return reader.result(), reports
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
