"""Live updates: one SDK event stream per hotel, fanned out to every page watching it.

A `Feed` follows `client.events(hotel_id)` with the SDK client of one of the
sessions watching that hotel (each of them may read it: they loaded its page)
and puts each event, as a small JSON-ready dict, on every subscriber's bounded
queue. A page that falls behind does not hold the others up: its queue is
emptied and it gets one `gap` message (the page reads the current state
again). When the session whose client feeds the stream ends, the feed carries
on with another watcher's client; when nobody has watched for `LINGER_S`, it stops.

Each feed also keeps the hotel's `Picture` (`picture.py`) current, so that the
rooms page renders from memory (`LiveHub.grid`) rather than reading every device.

A hotel's shared feed carries every room, so it is fed by and served to sessions that
see the whole hotel only (`ConsoleSession.whole_hotel`: a LAN token, or a cloud sign-in
granting the hotel or its organisation). A room-limited session gets a private feed: its
own SDK stream, which the relay filters to its rooms, and no picture is served from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from bellhop_sdk import BellhopError, Event, Gap, Hotel

from bellhop_console.picture import Grid, Picture
from bellhop_console.sessions import ConsoleSession

__all__ = ["LiveHub", "Subscription", "message_of"]

log = logging.getLogger("bellhop_console")

RETRY_MIN_S: Final = 0.5
RETRY_MAX_S: Final = 10.0
# A feed outlives its last page this long: the next page finds its picture current.
LINGER_S: Final = 60.0
# A stream that yielded nothing yet counts as following the hotel this long after it
# was opened (the gateway subscribes a watcher in milliseconds; the SDK waits 2 s).
SETTLE_S: Final = 2.0
Message = dict[str, Any]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def message_of(item: Event | Gap) -> Message:
    """What the page receives for one SDK item: its kind, path, time and data."""
    if isinstance(item, Gap):
        return {"type": "gap", "path": item.path.value, "at": _plain(item.at)}
    return {
        "type": item.kind,
        "path": item.path.value,
        "at": _plain(item.at),
        "room_id": item.room_id,
        "data": _plain(item.data),
    }


FeedKey = tuple[str, str]  # (hotel id, "" for the shared feed or the session's id)


@dataclass(eq=False)
class Subscription:
    """One page's view of a hotel's feed: a bounded queue; None on it means "stop"."""

    key: FeedKey
    session: ConsoleSession
    queue: asyncio.Queue[Message | None]
    overflows: int = 0

    def offer(self, message: Message | None) -> None:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            # Too slow to keep up: drop what waits and tell the page to read afresh.
            self.overflows += 1
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(message if message is None else {"type": "gap", "at": None})


@dataclass(eq=False)
class Feed:
    hotel: Hotel
    owner: ConsoleSession | None = None  # a private feed's only session; None: shared
    subscribers: set[Subscription] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    source: ConsoleSession | None = None
    keeper: ConsoleSession | None = None  # the last session that opened the hotel's grid
    status: Message | None = None  # the last "live"/"interrupted" note, for new pages
    picture: Picture = field(init=False)
    opened_at: float | None = None  # monotonic: the current stream was asked for
    first_item_at: float | None = None  # monotonic: its first item arrived
    streams: int = 0  # streams opened and closed: a read across a change is not current
    linger: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        self.picture = Picture(self.hotel_id)

    @property
    def hotel_id(self) -> str:
        return self.hotel.hotel_id

    @property
    def key(self) -> FeedKey:
        return (self.hotel_id, "" if self.owner is None else self.owner.sid)

    def admits(self, session: ConsoleSession) -> bool:
        """Whether `session` may feed and read this feed: its owner for a private one;
        a live session that sees the whole hotel for the shared one."""
        if session.expired:
            return False
        if self.owner is not None:
            return session is self.owner
        return session.whole_hotel(self.hotel)

    def following_since(self, now: float) -> float | None:
        """Since when every change of the hotel reaches this feed; None: not (yet) known."""
        if self.first_item_at is not None:
            return self.first_item_at
        if self.opened_at is not None and now - self.opened_at >= SETTLE_S:
            return self.opened_at + SETTLE_S
        return None


class LiveHub:
    """Every hotel's feed; `subscribe` and `unsubscribe` from the SSE endpoint."""

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self._feeds: dict[FeedKey, Feed] = {}
        self._closed = False

    def feeds(self) -> int:
        return len(self._feeds)

    def subscribe(self, hotel: Hotel, session: ConsoleSession) -> Subscription:
        """A page of `session` following `hotel` (the caller has just read it with that
        session): the shared feed when the session sees the whole hotel, else a private one."""
        owner = None if session.whole_hotel(hotel) else session
        feed = self._feed(hotel, owner)
        sub = Subscription(feed.key, session, asyncio.Queue(self.queue_size))
        feed.subscribers.add(sub)
        if feed.status is not None:
            sub.offer(feed.status)
        self._ensure_running(feed)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        feed = self._feeds.get(sub.key)
        if feed is None:
            return
        feed.subscribers.discard(sub)
        if feed.owner is not None:
            if not feed.subscribers:
                self._stop(feed)  # a private feed serves no picture: nothing to keep
            return
        feed.keeper = sub.session if feed.admits(sub.session) else feed.keeper
        if not feed.subscribers:
            self._linger(feed)

    async def grid(self, hotel: Hotel, session: ConsoleSession) -> Grid:
        """The hotel's rooms page from its picture, read afresh with `session`'s client
        when the picture is not current. Only for a session that may see the whole hotel
        (the picture is shared): the caller has just read `hotel` with that session."""
        if not session.whole_hotel(hotel):
            raise ValueError("a room-limited session may not read the shared picture")
        feed = self._feed(hotel, None)
        feed.keeper = session
        self._ensure_running(feed)
        if not feed.subscribers:
            self._linger(feed)
        picture = feed.picture
        async with picture.lock:
            now = time.monotonic()
            if not picture.usable(now):
                streams = feed.streams
                await picture.load(session.client, following_since=feed.following_since(now))
                if feed.streams != streams:
                    picture.invalidate()
            return picture.grid(hotel)

    def session_ended(self, session: ConsoleSession) -> None:
        """Close that session's pages; a feed it was feeding moves to another client."""
        for feed in list(self._feeds.values()):
            for sub in [s for s in feed.subscribers if s.session is session]:
                sub.offer(None)
                feed.subscribers.discard(sub)
            if feed.keeper is session:
                feed.keeper = None
            if feed.source is session and feed.task is not None:
                feed.task.cancel()
                feed.task = None
                if self._source(feed) is None:
                    self._stop(feed)
                else:
                    self._ensure_running(feed)
            elif not feed.subscribers:
                self._linger(feed)

    def _feed(self, hotel: Hotel, owner: ConsoleSession | None) -> Feed:
        key = (hotel.hotel_id, "" if owner is None else owner.sid)
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = Feed(hotel, owner)
        else:
            feed.hotel = hotel  # the latest read (its organisation decides `whole_hotel`)
        return feed

    def _ensure_running(self, feed: Feed) -> None:
        if feed.linger is not None and feed.subscribers:
            feed.linger.cancel()
            feed.linger = None
        if feed.task is None or feed.task.done():
            name = f"console-feed-{feed.hotel_id}"
            feed.task = asyncio.create_task(self._run(feed), name=name)

    def _linger(self, feed: Feed) -> None:
        """Stop `feed` after LINGER_S unless a page watches it again meanwhile."""
        if feed.linger is not None:
            feed.linger.cancel()
        feed.linger = asyncio.get_running_loop().call_later(LINGER_S, self._idle, feed)

    def _idle(self, feed: Feed) -> None:
        feed.linger = None
        if not feed.subscribers and self._feeds.get(feed.key) is feed:
            self._stop(feed)

    def _stop(self, feed: Feed) -> None:
        if self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]
        if feed.linger is not None:
            feed.linger.cancel()
            feed.linger = None
        if feed.task is not None:
            feed.task.cancel()
        feed.picture.invalidate()

    @staticmethod
    def _source(feed: Feed) -> ConsoleSession | None:
        """A watching page's session, else the one that last opened the grid, if it may
        still feed it (never a room-limited session for the shared feed)."""
        found = next((s.session for s in feed.subscribers if feed.admits(s.session)), None)
        if found is None and feed.keeper is not None and feed.admits(feed.keeper):
            found = feed.keeper
        return found

    def _publish(self, feed: Feed, message: Message) -> None:
        for sub in list(feed.subscribers):
            if feed.admits(sub.session):
                sub.offer(message)
            else:  # its grant no longer covers what this feed carries: end its page
                sub.offer(None)
                feed.subscribers.discard(sub)

    def _note(self, feed: Feed, state: str, detail: str = "", code: str = "") -> None:
        feed.status = {"type": "live", "state": state, "detail": detail, "code": code}
        self._publish(feed, feed.status)

    async def _run(self, feed: Feed) -> None:
        """Follow the hotel's events until cancelled; on a failure, wait and follow again."""
        delay = RETRY_MIN_S
        while True:
            source = self._source(feed)
            if source is None:
                self._stop(feed)
                return
            feed.source = source
            started = time.monotonic()
            feed.picture.invalidate()  # a new stream: what came before it may be missed
            feed.opened_at, feed.first_item_at = started, None
            feed.streams += 1
            try:
                stream = source.client.events(feed.hotel_id)
                self._note(feed, "live")
                try:
                    async for item in stream:
                        if feed.first_item_at is None:
                            feed.first_item_at = time.monotonic()
                        feed.picture.apply(item)
                        self._publish(feed, message_of(item))
                finally:
                    if feed.task is asyncio.current_task():  # not replaced meanwhile
                        feed.opened_at = None
                        feed.streams += 1
                    feed.picture.invalidate()
                    closing = getattr(stream, "aclose", None)
                    if closing is not None:
                        with contextlib.suppress(Exception):
                            await closing()
            except asyncio.CancelledError:
                raise
            except BellhopError as exc:
                self._note(feed, "interrupted", exc.message, exc.code)
            except Exception:
                log.warning("the live feed of %s failed", feed.hotel_id, exc_info=True)
                self._note(feed, "interrupted", "the live feed failed", "internal")
            if time.monotonic() - started > RETRY_MAX_S:
                delay = RETRY_MIN_S  # it ran a while: a fresh failure, not a loop
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def aclose(self) -> None:
        """Stop every feed and end every page's stream."""
        self._closed = True
        tasks = []
        for feed in list(self._feeds.values()):
            for sub in list(feed.subscribers):
                sub.offer(None)
            if feed.linger is not None:
                feed.linger.cancel()
            if feed.task is not None:
                feed.task.cancel()
                tasks.append(feed.task)
        self._feeds.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
