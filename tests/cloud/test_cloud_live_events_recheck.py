"""A stream's re-checks (docs/live-events.md, "How long a revoked watcher keeps watching"):
they run beside the stream, so a check that waits for the store holds back no event; what
a check finds ends the stream at once; a store that stays away ends it `unavailable`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from functools import partial

import pytest
from bellhop_cloud.live.events import LiveEvent
from bellhop_cloud.live.stream import CHECK_FAILURES_MAX, Watch, _Run
from sse_starlette import ServerSentEvent

from tests.cloud.bridging import cloud_hotel
from tests.cloud.support import Api
from tests.support.waiting import until

SQLITE_ONLY = pytest.mark.parametrize("backend", [("sqlite", None)], ids=["sqlite"])
RECHECK_S = 0.05


def _state(n: int) -> LiveEvent:
    return LiveEvent("state", {"device_id": f"d{n}", "values": {"n": n}})


async def _next(events: AsyncGenerator[ServerSentEvent, None]) -> ServerSentEvent:
    async with asyncio.timeout(10):
        return await anext(events)


def _n(event: ServerSentEvent) -> int:
    assert event.event == "state", event
    return int(str(event.data).split('"n":')[1].split("}")[0])


@SQLITE_ONLY
async def test_events_flow_while_a_check_waits_for_the_store_and_its_answer_ends_it(
    api: Api,
) -> None:
    hotel = await cloud_hotel(api)
    relay = api.relay
    started, answer = asyncio.Event(), asyncio.Event()

    async def slow_check() -> str | None:
        started.set()
        await answer.wait()  # a lookup queued behind others
        return "access_revoked"

    watch = Watch(expires_at=time.time() + 60, check=slow_check, visible=lambda _e: True)
    run = _Run(relay.live, hotel.org_id, hotel.hotel_id, watch, recheck_s=RECHECK_S)
    events = run.events(None)
    try:
        assert (await _next(events)).comment == "open"
        # The stream wakes on the node's tick (1 s) or an event to start its check.
        n = 0
        while not started.is_set():
            n += 1
            await relay.live.publish(hotel.hotel_id, [_state(n)])
            assert _n(await _next(events)) == n
        for m in range(n + 1, n + 4):  # the check is still waiting
            await relay.live.publish(hotel.hotel_id, [_state(m)])
            assert _n(await _next(events)) == m
        answer.set()
        end = await _next(events)
        assert end.event == "end"
        assert '"reason":"access_revoked"' in str(end.data)
    finally:
        await events.aclose()
    assert relay.live.subscribers == 0


@SQLITE_ONLY
async def test_checks_that_fail_end_the_stream_unavailable_only_when_they_keep_failing(
    api: Api,
) -> None:
    hotel = await cloud_hotel(api)
    relay = api.relay
    calls: list[str] = []
    outcomes = ["fail"] * (CHECK_FAILURES_MAX - 1) + ["fine"] + ["fail"] * CHECK_FAILURES_MAX

    async def flaky_check() -> str | None:
        outcome = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(outcome)
        if outcome == "fail":
            raise OSError("the store is away")
        return None

    watch = Watch(expires_at=time.time() + 60, check=flaky_check, visible=lambda _e: True)
    run = _Run(relay.live, hotel.org_id, hotel.hotel_id, watch, recheck_s=RECHECK_S)
    events = run.events(None)
    sent: list[ServerSentEvent] = []

    async def read() -> None:
        async for event in events:
            sent.append(event)

    def got(count: int) -> bool:  # the stream's first `count` events, or its end
        return reader.done() or len(sent) >= count

    reader = asyncio.create_task(read())
    try:
        n = 0
        # Two failures, a success (the count starts again), then failures to the limit:
        # the stream lives through the first two and ends after the last.
        while not reader.done():
            n += 1
            await relay.live.publish(hotel.hotel_id, [_state(n)])
            await until(partial(got, n + 1), 10, "the event or the end")
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await events.aclose()
    assert calls[: len(outcomes)] == outcomes, calls
    assert sent[-1].event == "end"
    assert '"reason":"unavailable"' in str(sent[-1].data)
    # Every event published before the end reached the watcher, in order.
    assert [_n(e) for e in sent[1:-1]] == list(range(1, len(sent) - 1))
