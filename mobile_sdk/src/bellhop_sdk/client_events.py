"""The client's live event stream across path switches, and fleet progress from it.

`follow_events` runs each path's stream in a task of its own (a `_Pump`) feeding one
queue, and applies `merge.EventMerger`'s rules (see its module docstring) as the client's
path selector switches: LAN -> cloud fills from the cloud's newest page and resumes the
cloud stream after it; cloud -> LAN opens the LAN stream and keeps the cloud's until the
gateway's backlog drained (`merge.Handover`); a broken LAN stream with no cloud yields a
`Gap` once the gateway answers again. Both pumps are cancelled when the iterator closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from bellhop_sdk.errors import BellhopError, Unreachable
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

if TYPE_CHECKING:
    from bellhop_sdk.client import BellhopClient

__all__ = ["follow_events", "report_fleet"]

FILL_LIMIT: Final = 1000  # the largest page the relay serves
QUEUE_CREDIT: Final = 256  # items a pump may read ahead of the consumer


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Ended:
    """A pump's stream ended: `error` None for a clean end by the server."""

    error: BaseException | None


class _Pump:
    """One path's stream read into the shared queue by a task the follower owns."""

    def __init__(
        self,
        path: Path,
        stream: AsyncIterator[Event | Gap],
        queue: asyncio.Queue[tuple[_Pump, Event | Gap | _Ended]],
        credit: asyncio.Semaphore,
    ) -> None:
        self.path = path
        self._stream = stream
        self._queue = queue
        self._credit = credit
        self._task = asyncio.create_task(self._run(), name=f"bellhop-events-{path}")

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
            with contextlib.suppress(BellhopError, RuntimeError):
                await aclose()


class _Follower:
    def __init__(self, client: BellhopClient, hotel_id: str, room_id: str | None) -> None:
        self.client = client
        self.hotel_id = hotel_id
        self.room_id = room_id
        self.merger = EventMerger()
        self.queue: asyncio.Queue[tuple[_Pump, Event | Gap | _Ended]] = asyncio.Queue()
        self.credit = asyncio.Semaphore(QUEUE_CREDIT)
        self.lan: _Pump | None = None
        self.cloud: _Pump | None = None
        self.handover: Handover | None = None
        self.has_cloud = Path.CLOUD in client.paths
        self.switched = client.switch_signal()
        self.waiter: asyncio.Future[tuple[_Pump, Event | Gap | _Ended]] | None = None

    def _pump(self, path: Path, after: str | None = None) -> _Pump:
        transport = self.client.transport(path)
        stream = transport.events(self.hotel_id, room_id=self.room_id, after=after)
        return _Pump(path, stream, self.queue, self.credit)

    async def close(self) -> None:
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
            self.handover = None
            return []
        cloud = self.client.transport(Path.CLOUD)
        try:
            page = await cloud.recent_events(self.hotel_id, limit=FILL_LIMIT)
        except Unreachable:
            self.client.report(Path.CLOUD, reachable=False)
            raise
        out = self.merger.fill(page, limit=FILL_LIMIT, now=_now())
        self.cloud = self._pump(Path.CLOUD, after=self.merger.resume_id)
        return out

    async def _recover(self) -> list[Event | Gap]:
        """No stream is open: reopen one within the client's `stream_reconnect_s`."""
        deadline = time.monotonic() + self.client.stream_reconnect_s
        wait = 0.25
        while True:
            if await self.client.lan_serves(self.hotel_id):
                self._open_lan()
                if not self.has_cloud:
                    return [self.merger.lan_gap(_now())]
                try:  # what the LAN missed meanwhile is in the cloud's log; then hand over
                    out = await self._to_cloud()
                except Unreachable:
                    return [self.merger.lan_gap(_now(), "lan_and_cloud_lost")]
                self.handover = Handover(time.monotonic())
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

    # -- what happens -----------------------------------------------------------------------

    async def on_ended(self, pump: _Pump, error: BaseException | None) -> list[Event | Gap] | None:
        """A stream ended; None when the whole follow ends with it."""
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
            self.handover = None
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
            if self.cloud is not None:
                self.handover = Handover(time.monotonic())
            return []
        if preferred is Path.CLOUD and self.lan is not None and self.has_cloud:
            # A call found the LAN unreachable; its stream may not have noticed yet.
            lan, self.lan = self.lan, None
            await lan.close()
            return await self._to_cloud()
        return []

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
        if self.switched.is_set():
            self.switched = self.client.switch_signal()
            return await self.on_switch()
        check = self.check_at()
        if check is not None and check <= time.monotonic():
            return await self.on_handover()
        if self.waiter is None:
            self.waiter = asyncio.ensure_future(self.queue.get())
        signal: asyncio.Future[object] = asyncio.ensure_future(self.switched.wait())
        waiting: set[asyncio.Future[object]] = {self.waiter, signal}  # type: ignore[arg-type]
        timeout = None if check is None else max(0.0, check - time.monotonic())
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
        if not self.waiter.done():
            return []
        pump, item = self.waiter.result()
        self.waiter = None
        if isinstance(item, _Ended):
            return await self.on_ended(pump, item.error)
        self.credit.release()
        if pump is not self.lan and pump is not self.cloud:
            return []  # read before its pump was closed
        self.client.last_path = pump.path
        taken = self.merger.accept(item)
        return [taken] if taken is not None else []

    def check_at(self) -> float | None:
        if self.handover is None:
            return None
        return self.handover.decide(time.monotonic()).check_at or time.monotonic()


async def follow_events(
    client: BellhopClient, hotel_id: str, *, room_id: str | None = None
) -> AsyncIterator[Event | Gap]:
    """`BellhopClient.events`: see the module docstring."""
    f = _Follower(client, hotel_id, room_id)
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
