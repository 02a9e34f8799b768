"""The client's rarer branches, with in-process transports (no sockets): both paths down,
a LAN-only stream across a gateway restart, a handover whose backlog never drains, the
prober's back-off, a prober that survives a broken probe, a LAN stream that goes silent,
bounded read-ahead, and closing (the iterator, and the client with everything it owns)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from bellhop_sdk import BellhopClient, Event, EventPage, Freshness, Gap, Hotel, Path
from bellhop_sdk.errors import GatewayOffline, Unreachable
from bellhop_sdk.models import Device
from bellhop_sdk.transport import Transport

from tests.support import waiting

HOTEL = "htl_branches"
TIMEOUT_S = 30.0  # generous for a loaded 2-core machine; every wait below is on a condition


class FakePath:
    """A `Transport` in memory. `up` says whether its server answers; `streams` are handed
    out by `events()` in order (each an async generator factory); it counts what it is
    asked. Only what the client uses here is implemented: anything else raises."""

    def __init__(self, path: Path, *, up: bool = True) -> None:
        self._path = path
        self.up = up
        self.probes: list[float] = []  # monotonic time of each probe
        self.calls = 0
        self.backlog: int | None = 0
        self.streams: list[Callable[[], AsyncIterator[Event | Gap]]] = []
        self.opened = 0
        self.closed_streams = 0
        self.page: list[Event] = []
        self.probe_error: BaseException | None = None
        self.backlog_reads = 0
        # A stream is open (`on_open(True)`) once this is set: a gateway subscribing late.
        self.subscribe = asyncio.Event()
        self.subscribe.set()
        self.waiting_to_subscribe = False

    @property
    def path(self) -> Path:
        return self._path

    def _check(self) -> None:
        if not self.up:
            raise Unreachable(f"the {self._path} server is gone", path=self._path)

    async def probe(self, timeout_s: float = 0.5) -> bool:
        self.probes.append(time.monotonic())
        if self.probe_error is not None:
            raise self.probe_error
        return self.up

    async def list_hotels(self) -> list[Hotel]:
        self._check()
        return [Hotel(HOTEL, "Branches", Freshness(self._path, _now()))]

    async def get_device(self, hotel_id: str, device_id: str) -> Device:
        self.calls += 1
        self._check()
        if self._path is Path.CLOUD:
            raise GatewayOffline("the gateway is offline", code="gateway_offline", path=Path.CLOUD)
        raise AssertionError("not reached in these tests")

    async def gateway_backlog(self, hotel_id: str) -> int | None:
        self._check()
        self.backlog_reads += 1
        return self.backlog

    async def recent_events(
        self, hotel_id: str, *, limit: int = 100, after: str | None = None
    ) -> EventPage:
        self._check()
        last = self.page[-1].event_id if self.page else None
        return EventPage(tuple(self.page[-limit:]), False, last)

    def events(
        self,
        hotel_id: str,
        *,
        room_id: str | None = None,
        after: str | None = None,
        on_open: Callable[[bool], object] | None = None,
    ) -> AsyncIterator[Event | Gap]:
        self.opened += 1
        factory = self.streams.pop(0) if self.streams else self._silent
        return self._tracked(factory(), on_open)

    async def _tracked(
        self, inner: AsyncIterator[Event | Gap], on_open: Callable[[bool], object] | None
    ) -> AsyncIterator[Event | Gap]:
        try:
            self.waiting_to_subscribe = True
            await self.subscribe.wait()
            self.waiting_to_subscribe = False
            if on_open is not None:
                on_open(True)
            async for item in inner:
                yield item
        finally:
            self.closed_streams += 1

    async def _silent(self) -> AsyncIterator[Event | Gap]:
        await asyncio.Event().wait()  # a stream on which nothing happens
        yield _event(self._path, 0)  # never reached

    async def aclose(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} is not used by these tests")


def _now() -> datetime:
    return datetime.now(UTC)


def _event(path: Path, n: int) -> Event:
    at = _now()
    key = ("state", "r1-thermostat", str(n))
    data = {"device_id": "r1-thermostat", "values": {"n": n}, "updated_at": at}
    event_id = f"{int(at.timestamp() * 1000)}-{n}" if path is Path.CLOUD else None
    return Event("state", key, HOTEL, "1", at, data, path, event_id)


def numbered(path: Path, numbers: range, *, then: BaseException | None = None) -> Any:
    """A stream factory: events `numbers`, then `then` raised (or silence)."""

    async def stream() -> AsyncIterator[Event | Gap]:
        for n in numbers:
            yield _event(path, n)
        if then is not None:
            raise then
        await asyncio.Event().wait()

    return stream


async def until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    await waiting.until(check, timeout, what, every=0.01)


def client(lan: FakePath | None, cloud: FakePath | None, **kw: Any) -> BellhopClient:
    settings: dict[str, Any] = {"backoff_min_s": 0.01, "backoff_max_s": 0.05}
    settings.update(kw)
    return BellhopClient(
        lan=cast("Transport | None", lan), cloud=cast("Transport | None", cloud), **settings
    )


async def collect(
    stream: AsyncIterator[Event | Gap], into: list[Event | Gap]
) -> asyncio.Task[None]:
    async def run() -> None:
        async for item in stream:
            into.append(item)

    return asyncio.create_task(run())


async def stop(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def numbers(got: list[Event | Gap]) -> list[int]:
    return [int(e.key[2]) for e in got if isinstance(e, Event)]


# -- both paths down ---------------------------------------------------------------------------


async def test_both_paths_down_raises_after_trying_each_once() -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD, up=False)
    # A long back-off: only the call itself probes the LAN during the test.
    async with client(lan, cloud, backoff_min_s=60, backoff_max_s=60) as c:
        probes = len(lan.probes)
        async with asyncio.timeout(TIMEOUT_S):
            with pytest.raises(Unreachable) as raised:
                await c.device(HOTEL, "r1-thermostat")
        assert raised.value.path in (Path.LAN, Path.CLOUD)
        assert cloud.calls == 1  # the cloud once; the LAN was probed (at most) once first
        assert len(lan.probes) - probes <= 1
        assert lan.calls == 0


async def test_gateway_offline_from_the_cloud_is_the_answer_when_the_lan_is_down() -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    async with client(lan, cloud) as c:
        async with asyncio.timeout(TIMEOUT_S):
            with pytest.raises(GatewayOffline):
                await c.device(HOTEL, "r1-thermostat")
        assert cloud.calls == 1
        assert lan.calls == 0


# -- LAN only: the gateway restarts ------------------------------------------------------------


async def test_a_lan_only_stream_reconnects_with_a_gap_after_a_gateway_restart() -> None:
    lan = FakePath(Path.LAN)
    restart = Unreachable("the gateway went away", path=Path.LAN)
    lan.streams = [numbered(Path.LAN, range(3), then=restart), numbered(Path.LAN, range(3, 6))]
    async with client(lan, None) as c:
        got: list[Event | Gap] = []
        lan.up = True
        task = await collect(c.events(HOTEL), got)
        try:
            await until(lambda: len(got) >= 7, "a gap and the second stream's events")
        finally:
            await stop(task)
    assert isinstance(got[3], Gap)
    assert got[3].reason == "lan_reconnected"
    assert got[3].path is Path.LAN
    assert numbers(got) == [0, 1, 2, 3, 4, 5]
    assert lan.opened == 2
    assert lan.closed_streams == 2


async def test_a_lan_only_stream_waits_for_the_gateway_then_resumes_with_a_gap() -> None:
    lan = FakePath(Path.LAN)
    cut = asyncio.Event()

    async def first() -> AsyncIterator[Event | Gap]:
        for n in range(2):
            yield _event(Path.LAN, n)
        await cut.wait()
        raise Unreachable("the gateway went away", path=Path.LAN)

    lan.streams = [first, numbered(Path.LAN, range(2, 4))]
    async with client(lan, None) as c:
        got: list[Event | Gap] = []
        task = await collect(c.events(HOTEL), got)
        try:
            await until(lambda: len(got) >= 2, "the first stream's events")
            lan.up = False  # the restart takes a while: probes fail meanwhile
            before = len(lan.probes)
            cut.set()
            await until(lambda: len(lan.probes) >= before + 3, "the gateway probed again")
            assert len(got) == 2  # nothing, not even a gap, until the gateway answers
            lan.up = True
            await until(lambda: len(got) >= 5, "a gap and the second stream's events")
        finally:
            await stop(task)
    assert isinstance(got[2], Gap)
    assert numbers(got) == [0, 1, 2, 3]


# -- cloud -> LAN: the backlog never drains ----------------------------------------------------


async def test_a_handover_whose_backlog_never_drains_closes_the_cloud_with_a_gap() -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    lan.backlog = 7  # the gateway cannot reach the relay: its backlog stays
    lan.streams = [numbered(Path.LAN, range(100, 102))]
    cloud.streams = [numbered(Path.CLOUD, range(3))]
    async with client(lan, cloud, handover_grace_s=0.05, handover_max_s=0.5) as c:
        got: list[Event | Gap] = []
        task = await collect(c.events(HOTEL), got)
        try:
            await until(lambda: len(got) >= 3, "the cloud's events")
            assert all(e.path is Path.CLOUD for e in got)
            started = time.monotonic()
            lan.up = True  # the prober finds the gateway: the LAN stream opens
            await until(lambda: any(isinstance(e, Gap) for e in got), "the handover's gap")
            waited = time.monotonic() - started
            await until(lambda: cloud.closed_streams == 1, "the cloud stream closed")
            await until(lambda: len(numbers(got)) == 5, "the LAN's events")
        finally:
            await stop(task)
    gap = next(e for e in got if isinstance(e, Gap))
    assert gap.reason == "cloud_backlog"
    assert waited >= 0.5  # not before handover_max_s
    assert numbers(got) == [0, 1, 2, 100, 101]


async def test_a_handover_closes_the_cloud_without_a_gap_once_the_backlog_drained() -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    lan.backlog = 2
    cloud.streams = [numbered(Path.CLOUD, range(3))]
    async with client(lan, cloud, handover_grace_s=0.05, handover_max_s=60) as c:
        got: list[Event | Gap] = []
        task = await collect(c.events(HOTEL), got)
        try:
            await until(lambda: len(got) >= 3, "the cloud's events")
            lan.up = True
            await until(lambda: lan.opened == 1, "the LAN stream opened")
            assert cloud.closed_streams == 0  # kept while the gateway's backlog is not 0
            lan.backlog = 0
            await until(lambda: cloud.closed_streams == 1, "the cloud stream closed")
        finally:
            await stop(task)
    assert not [e for e in got if isinstance(e, Gap)]


async def test_a_handover_counts_from_when_the_lan_stream_is_subscribed() -> None:
    """The gateway confirms the LAN stream's subscription late: until it does, the backlog
    is not read and the cloud stream stays, however long the grace has passed."""
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    lan.subscribe.clear()
    gate = asyncio.Event()

    async def cloud_stream() -> AsyncIterator[Event | Gap]:
        for n in range(3):
            yield _event(Path.CLOUD, n)
        await gate.wait()  # one more once the LAN stream is waiting for its subscription
        yield _event(Path.CLOUD, 3)
        await asyncio.Event().wait()

    cloud.streams = [cloud_stream]
    async with client(lan, cloud, handover_grace_s=0.0, handover_max_s=60) as c:
        got: list[Event | Gap] = []
        task = await collect(c.events(HOTEL), got)
        try:
            await until(lambda: len(got) >= 3, "the cloud's events")
            lan.up = True
            await until(lambda: lan.waiting_to_subscribe, "the LAN stream is being opened")
            gate.set()
            await until(lambda: len(got) >= 4, "a cloud event taken after the LAN was asked")
            assert lan.backlog_reads == 0, "the backlog was read before the subscription"
            assert cloud.closed_streams == 0
            lan.subscribe.set()
            await until(lambda: cloud.closed_streams == 1, "the cloud stream closed")
            assert lan.backlog_reads >= 1
        finally:
            await stop(task)
    assert not [e for e in got if isinstance(e, Gap)]


# -- the prober --------------------------------------------------------------------------------


async def test_successful_calls_do_not_wake_the_prober() -> None:
    """The prober is woken only when its next probe moves earlier: not by every answer."""
    lan = FakePath(Path.LAN)
    async with client(lan, None, backoff_min_s=60, backoff_max_s=60) as c:
        wakes = 0
        kick = c._kick  # what the prober waits on
        original = kick.set

        def counted() -> None:
            nonlocal wakes
            wakes += 1
            original()

        kick.set = counted  # type: ignore[method-assign]
        for _ in range(20):
            await c.hotels()
        assert wakes == 0, f"{wakes} wake-ups for calls that changed nothing"
        lan.up = False
        with pytest.raises(Unreachable):
            await c.hotels()
        assert wakes >= 1, "a LAN found down schedules a re-probe: the prober must know"


async def test_the_prober_backs_off_while_the_lan_is_down() -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    low, high = 0.02, 0.16
    async with client(lan, cloud, backoff_min_s=low, backoff_max_s=high) as c:
        await until(lambda: len(lan.probes) >= 9, "nine probes")
        jitter = c.selector.jitter
    gaps = [b - a for a, b in zip(lan.probes, lan.probes[1:], strict=False)][:8]
    # Each wait is the back-off (doubling from `low`, capped at `high`) less its jitter,
    # at least: a loaded machine only makes them longer. No storm.
    wanted = [min(low * 2**i, high) * (1 - jitter) for i in range(len(gaps))]
    for i, (gap, least) in enumerate(zip(gaps, wanted, strict=True)):
        assert gap >= least * 0.95, f"probe {i + 1} came after {gap:.3f} s, before {least:.3f} s"
    assert sum(gaps) >= sum(wanted) * 0.95


async def test_a_probe_that_raises_does_not_stop_the_prober(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    lan.probe_error = RuntimeError("a transport broke its promise")
    with caplog.at_level(logging.WARNING, logger="bellhop_sdk"):
        async with client(lan, cloud) as c:
            await until(lambda: len(lan.probes) >= 3, "the prober keeps probing")
            lan.probe_error = None
            lan.up = True
            await until(lambda: c.selector.preferred is Path.LAN, "the LAN found again")
    assert "the LAN probe failed unexpectedly" in caplog.text


async def test_a_silent_lan_stream_is_checked_and_left_for_the_cloud() -> None:
    """A LAN connection that dies without a word: the stream hears nothing, the prober
    probes after `lan_check_s` of silence, finds nobody, and the stream moves on."""
    lan, cloud = FakePath(Path.LAN), FakePath(Path.CLOUD)
    lan.streams = [numbered(Path.LAN, range(2))]  # then silence, never an error
    cloud.streams = [numbered(Path.CLOUD, range(10, 12))]
    async with client(lan, cloud, lan_check_s=0.2) as c:
        got: list[Event | Gap] = []
        task = await collect(c.events(HOTEL), got)
        try:
            await until(lambda: len(got) >= 2, "the LAN's events")
            probes = len(lan.probes)
            lan.up = False
            await until(lambda: len(numbers(got)) >= 4, "the cloud's events")
        finally:
            await stop(task)
    assert len(lan.probes) > probes
    assert lan.closed_streams == 1
    assert numbers(got) == [0, 1, 10, 11]


# -- bounded read-ahead, closing ---------------------------------------------------------------


async def test_a_consumer_that_stops_reading_holds_back_the_stream() -> None:
    from bellhop_sdk.client_events import QUEUE_CREDIT

    lan = FakePath(Path.LAN)
    produced = 0

    async def endless() -> AsyncIterator[Event | Gap]:
        nonlocal produced
        while True:
            produced += 1
            yield _event(Path.LAN, produced)

    lan.streams = [endless]
    async with client(lan, None) as c:
        stream = c.events(HOTEL)
        first = await anext(stream)
        assert isinstance(first, Event)
        # The pump reads ahead until its credit is spent, then waits for the consumer.
        await until(lambda: produced >= QUEUE_CREDIT, "the pump read ahead")
        for _ in range(50):
            await asyncio.sleep(0)  # the pump's turns: it stays held back
        assert produced <= QUEUE_CREDIT + 2
        await stream.aclose()  # type: ignore[attr-defined]
        assert lan.closed_streams == 1


async def test_breaking_out_of_the_iteration_closes_the_streams() -> None:
    lan = FakePath(Path.LAN)
    lan.streams = [numbered(Path.LAN, range(5))]
    async with client(lan, None) as c:
        async for item in c.events(HOTEL):
            assert isinstance(item, Event)
            break
        gc.collect()  # the dropped iterator is finalised: asyncio closes it
        await until(lambda: lan.closed_streams == 1, "the LAN stream closed after break")
        await until(lambda: not c._followers, "the client forgot the stream")


async def test_close_cancels_every_task_and_ends_open_streams() -> None:
    lan, cloud = FakePath(Path.LAN, up=False), FakePath(Path.CLOUD)
    cloud.streams = [numbered(Path.CLOUD, range(2))]
    before = asyncio.all_tasks()
    c = client(lan, cloud)
    await c.open()
    got: list[Event | Gap] = []
    stream = c.events(HOTEL)
    task = await collect(stream, got)
    await until(lambda: len(got) >= 2, "the cloud's events")
    await until(lambda: len(lan.probes) >= 2, "the prober at work")
    await c.aclose()
    async with asyncio.timeout(TIMEOUT_S):
        await task  # the iteration ends: the client that fed it is closed
    assert cloud.closed_streams == 1
    await until(
        lambda: not (asyncio.all_tasks() - before - {asyncio.current_task()}),
        "no task of the client is left",
    )
    assert c._prober is not None
    assert c._prober.cancelled()
    await stream.aclose()  # type: ignore[attr-defined]
