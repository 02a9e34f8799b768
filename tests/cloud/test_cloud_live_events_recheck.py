"""Live events' re-checks (docs/live-events.md, "How long a revoked watcher keeps watching"):
one check per session and scope on a node, shared by its streams; each stream's verdict on
it; beside the streams, so a check waiting for the store holds back no event; a store that
stays away ends the streams `unavailable` only when it stays away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import pytest
from bellhop_cloud.live.checks import FAILURES_MAX, Rechecks
from bellhop_cloud.live.events import LiveEvent
from bellhop_cloud.live.log import Subscription
from bellhop_cloud.live.stream import Watch, _Run
from sse_starlette import ServerSentEvent

from tests.cloud.bridging import cloud_hotel
from tests.cloud.support import Api
from tests.support.waiting import until

SQLITE_ONLY = pytest.mark.parametrize("backend", [("sqlite", None)], ids=["sqlite"])
EVERY_S = 0.05


@pytest.fixture
def relay_settings() -> dict[str, Any]:
    return {"events_recheck_s": EVERY_S}


def _subs(count: int) -> list[Subscription]:
    return [Subscription("o1", "h1", maxsize=10) for _ in range(count)]


async def test_streams_of_one_session_and_scope_share_one_check_each_with_its_verdict() -> None:
    rechecks = Rechecks(every_s=EVERY_S)
    fetched: dict[str, int] = {}
    answer = "fine"

    def fetcher(name: str) -> Callable[[], Coroutine[Any, Any, str]]:
        async def fetch() -> str:
            fetched[name] = fetched.get(name, 0) + 1
            return answer

        return fetch

    def keeps(_found: Any) -> str | None:
        return None

    def revoked_when_told(found: Any) -> str | None:
        return "access_revoked" if found == "revoke one" else None

    one, two, three, other = _subs(4)
    key = ("s1", "u1", "hotel", "h1")
    try:
        started = time.monotonic()
        rechecks.join(key, fetcher("one"), one, revoked_when_told)
        rechecks.join(key, fetcher("two"), two, keeps)
        rechecks.join(key, fetcher("three"), three, keeps)
        rechecks.join(("s2", "u1", "hotel", "h1"), fetcher("other"), other, keeps)
        assert len(rechecks) == 2
        await until(lambda: fetched.get("one", 0) >= 5, 10, "five checks of the first group")
        periods = (time.monotonic() - started) / EVERY_S
        # One check per group and period, whatever its streams: one per stream would
        # be three times as many.
        assert fetched["one"] <= periods + 1, (fetched, periods)
        assert "two" not in fetched
        assert "three" not in fetched
        assert all(sub.ended is None for sub in (one, two, three, other))
        answer = "revoke one"
        await until(lambda: one.ended is not None, 10, "the verdict on the first stream")
        assert one.ended == "access_revoked"
        assert await one.next() == "access_revoked"  # what wakes its stream
        assert (two.ended, three.ended, other.ended) == (None, None, None)
        for sub in (one, two, three):  # their streams ended: the first's leave is harmless
            rechecks.leave(key, sub)
        assert len(rechecks) == 1  # the group's check stopped with its last stream
    finally:
        await rechecks.close()
    assert len(rechecks) == 0


async def test_only_checks_that_keep_failing_end_the_streams_unavailable() -> None:
    rechecks = Rechecks(every_s=EVERY_S)
    outcomes = ["fail"] * (FAILURES_MAX - 1) + ["fine"] + ["fail"] * FAILURES_MAX
    calls: list[str] = []

    async def flaky() -> str:
        outcome = outcomes[min(len(calls), len(outcomes) - 1)]
        calls.append(outcome)
        if outcome == "fail":
            raise OSError("the store is away")
        return outcome

    subs = _subs(2)
    try:
        for sub in subs:
            rechecks.join("key", flaky, sub, lambda _found: None)
        await until(lambda: all(s.ended for s in subs), 10, "the streams ended")
        # Two failures, a success (the count starts again), then failures to the limit.
        assert calls == outcomes
        assert [s.ended for s in subs] == ["unavailable", "unavailable"]
        assert len(rechecks) == 0
    finally:
        await rechecks.close()


def _state(n: int) -> LiveEvent:
    return LiveEvent("state", {"device_id": f"d{n}", "values": {"n": n}})


async def _next(events: AsyncGenerator[ServerSentEvent, None]) -> ServerSentEvent:
    async with asyncio.timeout(10):
        return await anext(events)


def _n(event: ServerSentEvent) -> int:
    assert event.event == "state", event
    return int(str(event.data).split('"n":')[1].split("}")[0])


@SQLITE_ONLY
async def test_events_flow_while_a_check_waits_for_the_store_and_its_verdict_ends_it(
    api: Api,
) -> None:
    hotel = await cloud_hotel(api)
    relay = api.relay
    started, answer = asyncio.Event(), asyncio.Event()

    async def slow_fetch() -> str:
        started.set()
        await answer.wait()  # a lookup queued behind others
        return "revoked"

    def verdict(found: Any) -> str | None:
        return "access_revoked" if found == "revoked" else None

    watch = Watch(
        expires_at=time.time() + 60,
        key=("s", "u", "hotel", hotel.hotel_id),
        fetch=slow_fetch,
        apply=verdict,
        visible=lambda _e: True,
    )
    events = _Run(relay.live, hotel.org_id, hotel.hotel_id, watch).events(None)
    try:
        assert (await _next(events)).comment == "open"
        await until(started.is_set, 10, "the first check")
        for n in range(1, 4):  # the check is still waiting for the store
            await relay.live.publish(hotel.hotel_id, [_state(n)])
            assert _n(await _next(events)) == n
        answer.set()
        end = await _next(events)
        assert end.event == "end"
        assert '"reason":"access_revoked"' in str(end.data)
    finally:
        await events.aclose()
    assert relay.live.subscribers == 0
    assert len(relay.live.rechecks) == 0
