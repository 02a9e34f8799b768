"""The client's live event stream across path switches, and fleet progress from it.

`follow_events` runs each path's stream in a task of its own (a `_Pump`) feeding one
queue, and applies `merge.EventMerger`'s rules (see its module docstring) as the client's
path selector switches: LAN -> cloud fills from the cloud's newest page and resumes the
cloud stream after it; cloud -> LAN opens the LAN stream and keeps the cloud's until the
gateway's backlog drained (`merge.Handover`); a broken LAN stream with no cloud yields a
`Gap` once the gateway answers again. A LAN the client's prober finds down (also one that
went silent: `BellhopClient.lan_check_s`) closes the LAN stream as if it had broken.

Both pumps are cancelled when the iterator closes (`aclose()`, or `break` once the
iterator is dropped) and when the client closes (the iteration then ends). The queue
between the pumps and the consumer is bounded: a pump reads at most `QUEUE_CREDIT` items
ahead, then the stream's own flow control holds the server back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from bellhop_sdk.errors import MALFORMED, BellhopError, Unreachable, malformed
from bellhop_sdk.merge import EventMerger, Handover
from bellhop_sdk.models import (
    Command,
    CommandStatus,
    Event,
    FleetCommand,
    Freshness,
    Gap,
    Path,
    from_ms,
    to_ms,
)
from bellhop_sdk.paths import LanState

if TYPE_CHECKING:
    from bellhop_sdk.client import BellhopClient

__all__ = ["Follower", "follow_events", "report_fleet"]

log = logging.getLogger("bellhop_sdk")

FILL_LIMIT: Final = 1000  # the largest page the relay serves
QUEUE_CREDIT: Final = 256  # items a pump may read ahead of the consumer


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Opened:
    """A pump's stream is open: `confirmed` when the server said every event from now on
    reaches it (the gateway's subscribed header), not only that the call is under way."""

    confirmed: bool


@dataclass(frozen=True, slots=True)
class _Ended:
    """A pump's stream ended: `error` None for a clean end by the server."""

    error: BaseException | None


_Item = Event | Gap | _Opened | _Ended


class _Pump:
    """One path's stream read into the shared queue by a task the follower owns."""

    def __init__(
        self,
        path: Path,
        stream: Callable[[Callable[[bool], object]], AsyncIterator[Event | Gap]],
        queue: asyncio.Queue[tuple[_Pump, _Item]],
        credit: asyncio.Semaphore,
    ) -> None:
        """`stream(on_open)`: the path's events, calling `on_open` when it is open."""
        self.path = path
        self._queue = queue
        self._credit = credit
        self._stream = stream(self._opened)
        self._task = asyncio.create_task(self._run(), name=f"bellhop-events-{path}")

    def _opened(self, confirmed: bool) -> None:
        self._queue.put_nowait((self, _Opened(confirmed)))

    async def _run(self) -> None:
        try:
            async for item in self._stream:
                await self._credit.acquire()
                self._queue.put_nowait((self, item))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the follower, which decides
            self._queue.put_nowait((self, _Ended(exc)))
        else:
            self._queue.put_nowait((self, _Ended(None)))

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing is best effort: the stream is dropped either way
                log.debug("closing the %s event stream failed", self.path, exc_info=True)


class Follower:
    """One `events()` iteration: its pumps, merger and handover (module docstring)."""

    def __init__(self, client: BellhopClient, hotel_id: str, room_id: str | None) -> None:
        self.client = client
        self.hotel_id = hotel_id
        self.room_id = room_id
        self.merger = EventMerger()
        self.queue: asyncio.Queue[tuple[_Pump, _Item]] = asyncio.Queue()
        self.credit = asyncio.Semaphore(QUEUE_CREDIT)
        self.lan: _Pump | None = None
        self.cloud: _Pump | None = None
        self.handover: Handover | None = None
        # Back on the LAN with the cloud still open: the handover starts once the LAN
        # stream is open (subscribed on the gateway), not when it was asked for.
        self.handover_due = False
        self.next_check = 0.0  # when to read the gateway's backlog next (monotonic)
        self.has_cloud = Path.CLOUD in client.paths
        self.switched = client.switch_signal()
        self.waiter: asyncio.Future[tuple[_Pump, _Item]] | None = None
        self.closed = False

    @property
    def on_lan(self) -> bool:
        """Whether a LAN stream is open (the client's prober then watches the gateway)."""
        return self.lan is not None

    def _pump(self, path: Path, after: str | None = None) -> _Pump:
        if self.closed:  # the client closed it while a switch was under way
            raise BellhopError("the client is closed", code="closed", path=path)
        transport = self.client.transport(path)

        def stream(on_open: Callable[[bool], object]) -> AsyncIterator[Event | Gap]:
            return transport.events(
                self.hotel_id, room_id=self.room_id, after=after, on_open=on_open
            )

        return _Pump(path, stream, self.queue, self.credit)

    async def close(self) -> None:
        """Stop both pumps (idempotent); a consumer waiting in `step` sees the end."""
        self.closed = True
        self.client.stream_closed(self)
        if self.waiter is not None:
            self.waiter.cancel()
        for pump in (self.lan, self.cloud):
            if pump is not None:
                await pump.close()
        self.lan = self.cloud = None

    # -- opening ----------------------------------------------------------------------------

    async def start(self) -> list[Event | Gap]:
        if await self.client.lan_serves(self.hotel_id):
            self._open_lan()
            return []
        if not self.has_cloud:
            raise Unreachable("the gateway does not answer on the LAN", path=Path.LAN)
        self.cloud = self._pump(Path.CLOUD)  # a fresh stream: from now on
        return []

    def _open_lan(self) -> None:
        self.merger.lan_opened(_now())
        self.lan = self._pump(Path.LAN)

    async def _to_cloud(self) -> list[Event | Gap]:
        """The LAN stream is gone: fill from the cloud's page, follow the cloud after it."""
        if self.cloud is not None:  # mid-handover: the cloud stream never stopped
            self.handover, self.handover_due = None, False
            return []
        cloud = self.client.transport(Path.CLOUD)
        now = _now()
        try:
            trimmed = None
            if (after := self.merger.trim_check_id(now)) is not None:
                # The log still holding the last cloud event seen says nothing after it
                # was trimmed, whatever other hotels of the organisation published.
                trimmed = (await cloud.recent_events(self.hotel_id, limit=1, after=after)).gap
            page = await cloud.recent_events(self.hotel_id, limit=FILL_LIMIT)
        except Unreachable:
            self.client.report(Path.CLOUD, reachable=False)
            raise
        except MALFORMED as exc:
            raise malformed(exc, Path.CLOUD) from None
        out = self.merger.fill(page, limit=FILL_LIMIT, now=now, trimmed=trimmed)
        self.cloud = self._pump(Path.CLOUD, after=self.merger.resume_id)
        return out

    async def _recover(self) -> list[Event | Gap]:
        """No stream is open: reopen one within the client's `stream_reconnect_s`."""
        deadline = time.monotonic() + self.client.stream_reconnect_s
        wait = 0.25
        while not self.closed:
            if await self.client.lan_serves(self.hotel_id):
                self._open_lan()
                if not self.has_cloud:
                    return [self.merger.lan_gap(_now())]
                try:  # what the LAN missed meanwhile is in the cloud's log; then hand over
                    out = await self._to_cloud()
                except Unreachable:
                    return [self.merger.lan_gap(_now(), "lan_and_cloud_lost")]
                self.handover_due = True
                return out
            if self.has_cloud:
                with contextlib.suppress(Unreachable):
                    return await self._to_cloud()
            left = deadline - time.monotonic()
            if left <= 0:
                raise Unreachable("no path reaches the hotel's events", code="no_path")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, left)):
                    await self.client.switch_signal().wait()
            wait = min(wait * 2, 5.0)
        return []

    # -- what happens -----------------------------------------------------------------------

    async def on_ended(self, pump: _Pump, error: BaseException | None) -> list[Event | Gap] | None:
        """A stream ended; None when the whole follow ends with it."""
        if isinstance(error, MALFORMED):  # an event that does not parse: a typed error
            error = malformed(error, pump.path)
        if error is not None and not isinstance(error, Unreachable):
            raise error  # unauthenticated after a refresh, forbidden, ...: the caller's
        if pump is self.lan:
            self.lan = None
            self.client.report(Path.LAN, reachable=False)
            if self.has_cloud:
                with contextlib.suppress(Unreachable):
                    return await self._to_cloud()
            return await self._recover()
        if pump is self.cloud:
            self.cloud = None
            self.handover, self.handover_due = None, False
            if error is not None:
                self.client.report(Path.CLOUD, reachable=False)
            if self.lan is not None:  # the LAN carries on; what the cloud held back is lost
                return [Gap("cloud_lost", _now(), Path.CLOUD, self.merger.resume_id)]
            if error is None:
                # The relay ended the stream for good (session ended, access revoked):
                # with no LAN to turn to there is nothing more to follow.
                return None
            return await self._recover()
        return []  # a pump closed earlier: its last words do not matter

    async def on_switch(self) -> list[Event | Gap]:
        preferred = self.client.selector.preferred
        if preferred is Path.LAN and self.lan is None:
            if not await self.client.lan_serves(self.hotel_id):
                return []
            self._open_lan()
            self.handover_due = self.cloud is not None
            return []
        if self.lan is not None and self.client.selector.lan_state is LanState.DOWN:
            # A call or probe found the LAN unreachable; its stream may not have noticed
            # (a connection that died without a word never does).
            lan, self.lan = self.lan, None
            await lan.close()
            if self.has_cloud:
                with contextlib.suppress(Unreachable):
                    return await self._to_cloud()
            return await self._recover()
        return []

    def _handover(self) -> Handover:
        client, now = self.client, time.monotonic()
        handover = Handover(now, grace_s=client.handover_grace_s, max_s=client.handover_max_s)
        self.next_check = now  # the backlog is read at once, then as the handover says
        return handover

    async def on_handover(self) -> list[Event | Gap]:
        """Read the gateway's backlog; close the cloud stream once it drained."""
        handover = self.handover
        assert handover is not None
        try:
            backlog = await self.client.transport(Path.LAN).gateway_backlog(self.hotel_id)
        except BellhopError:
            backlog = None  # the LAN stream will say if the gateway went away
        decision = handover.backlog(backlog, time.monotonic())
        if not decision.close:
            self.next_check = decision.check_at or time.monotonic()
            return []
        self.handover = None
        if self.cloud is not None:
            cloud, self.cloud = self.cloud, None
            await cloud.close()
        if decision.gap:
            return [Gap("cloud_backlog", _now(), Path.LAN, self.merger.resume_id)]
        return []

    async def step(self) -> list[Event | Gap] | None:
        """Wait for the next thing to happen and return what to yield; None: the end."""
        if self.closed:
            return None
        if self.switched.is_set():
            self.switched = self.client.switch_signal()
            return await self.on_switch()
        check = self.check_at()
        if check is not None and check <= time.monotonic():
            return await self.on_handover()
        got = await self._next(check)
        if got is None:
            return None if self.closed else []
        return await self._handle(*got)

    async def _handle(self, pump: _Pump, item: _Item) -> list[Event | Gap] | None:
        if isinstance(item, _Ended):
            return await self.on_ended(pump, item.error)
        if isinstance(item, _Opened):
            return self._opened(pump)
        return self._take(pump, item)

    def _opened(self, pump: _Pump) -> list[Event | Gap]:
        """A stream is open: a handover due back on the LAN starts counting now."""
        if pump is self.lan and self.handover_due and self.cloud is not None:
            self.handover, self.handover_due = self._handover(), False
        return []

    def _take(self, pump: _Pump, item: Event | Gap) -> list[Event | Gap]:
        self.credit.release()
        if pump is not self.lan and pump is not self.cloud:
            return []  # read before its pump was closed
        self.client.last_path = pump.path
        if pump.path is Path.LAN:
            self.client.lan_heard = time.monotonic()
        taken = self.merger.accept(item)
        return [taken] if taken is not None else []

    async def _next(self, check: float | None) -> tuple[_Pump, _Item] | None:
        """The next item of a pump; None when a switch, the handover's next check (at
        `check`) or the follower's closing comes first."""
        if self.waiter is None:
            self.waiter = asyncio.ensure_future(self.queue.get())
        signal: asyncio.Future[object] = asyncio.ensure_future(self.switched.wait())
        waiting: set[asyncio.Future[object]] = {self.waiter, signal}  # type: ignore[arg-type]
        timeout = None if check is None else max(0.0, check - time.monotonic())
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
        if self.closed or not self.waiter.done():
            return None
        got, self.waiter = self.waiter.result(), None
        return got

    def check_at(self) -> float | None:
        """When the handover reads the backlog next (the time its last reading named: a
        time recomputed from now on every wake-up would never come); None: no handover."""
        return None if self.handover is None else self.next_check


async def follow_events(
    client: BellhopClient, hotel_id: str, *, room_id: str | None = None
) -> AsyncIterator[Event | Gap]:
    """`BellhopClient.events`: see the module docstring."""
    f = Follower(client, hotel_id, room_id)
    client.stream_opened(f)
    try:
        for item in await f.start():
            yield item
        while (batch := await f.step()) is not None:
            for item in batch:
                yield item
    finally:
        await f.close()


def _command_from_event(hotel_id: str, event: Event) -> Command:
    d = event.data
    completed = d.get("completed_at")
    if isinstance(completed, str):
        completed = from_ms(to_ms(datetime.fromisoformat(completed)))
    return Command(
        hotel_id=hotel_id,
        command_id=str(d["command_id"]),
        device_id=str(d.get("device_id", "")),
        name="",
        status=CommandStatus(str(d["status"])),
        freshness=Freshness(event.path, event.at),
        result=d.get("result"),
        error=d.get("error"),
        completed_at=completed if isinstance(completed, datetime) else None,
    )


async def report_fleet(
    client: BellhopClient,
    hotel_id: str,
    fleet_id: str,
    sending: Awaitable[FleetCommand],
    progress: Callable[[Command], object],
) -> FleetCommand:
    """Send a fleet command while following the hotel's events: each device's finished
    command is reported once as it comes in, the rest from the final answer."""
    reported: set[str] = set()
    prefix = f"{fleet_id}."

    async def watch() -> None:
        async for item in client.events(hotel_id):
            if isinstance(item, Event) and item.kind == "command":
                command = _command_from_event(hotel_id, item)
                done = command.status.finished
                if (
                    done
                    and command.command_id.startswith(prefix)
                    and command.device_id not in reported
                ):
                    reported.add(command.device_id)
                    progress(command)

    watcher = asyncio.create_task(watch(), name="bellhop-fleet-progress")
    try:
        answer = await sending
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, BellhopError):
            await watcher
    for command in answer.commands:
        if command.device_id not in reported:
            reported.add(command.device_id)
            progress(command)
    return answer
