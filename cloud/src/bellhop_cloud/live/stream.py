"""One watcher's Server-Sent Events stream: resume, live events, re-checks, the end.

    watch = Watch(expires_at=principal.expires_at, key=..., fetch=..., apply=..., visible=...)
    return EventStream(live, org_id, hotel_id, after, watch, heartbeat=15)

The stream subscribes before it reads the log, so that nothing published
meanwhile is lost; ids already sent are skipped, so nothing is sent twice.
It ends with an `end` event naming why: `token_expired` at the access
token's expiry, `session_ended` / `access_revoked` when a re-check finds so
(checks.py: one per session and scope, beside the streams, never in their way),
`slow_consumer` when its queue overflowed, `shutting_down` as soon as the
server is asked to stop, `unavailable` when the checks kept failing. A watcher
that stops reading altogether is cut when a send cannot finish within
`send_timeout` (no `end` can reach it).

Why the server's stop needs its own path: uvicorn runs the app's lifespan
shutdown (where `LiveEvents.close` ends every subscription) only once every
connection has closed, or its graceful timeout has passed, so that comes too
late for open streams. sse-starlette learns of the stop itself (it wraps
uvicorn's signal handling) and tells each answer through its
`shutdown_event`; the stream's subscription is then ended at once, so its
generator wakes, sends `end`, and the answer completes within
`shutdown_grace_period` instead of being cancelled mid-stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from typing import Final

import anyio
import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Receive, Scope, Send

from bellhop_cloud.live.checks import Apply, Fetch
from bellhop_cloud.live.events import Entry, EventId, format_id, iso
from bellhop_cloud.live.log import GAP, Subscription
from bellhop_cloud.live.service import LiveEvents

__all__ = [
    "SEP",
    "SHUTDOWN_GRACE_S",
    "EventStream",
    "Watch",
    "end_event",
    "entry_event",
    "gap_event",
]

log = logging.getLogger(__name__)

SEP: Final = "\n"
# How long a stream is given to send its `end` once the server is stopping, before it
# is cut: only a client whose socket buffers are full needs it. Well under uvicorn's
# graceful timeout (server.GRACEFUL_SHUTDOWN_S, 10 s), which bounds the whole drain.
SHUTDOWN_GRACE_S: Final = 5.0


@dataclass(slots=True)
class Watch:
    """What one stream may see, kept current by its group's re-checks (checks.py)."""

    expires_at: float  # the access token's `exp`
    key: Hashable  # its session and scope: the streams whose checks are one
    fetch: Fetch  # the session and the grants, once per check of the group
    apply: Apply  # this stream's verdict on what `fetch` found: None, or why it ends
    visible: Callable[[Entry], bool]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def entry_event(entry: Entry) -> ServerSentEvent:
    return ServerSentEvent(data=entry.payload, event=entry.kind, id=entry.id, sep=SEP)


def gap_event(last_event_id: EventId | None) -> ServerSentEvent:
    detail = "events may have been missed: read the current state again"
    data = {
        "kind": "gap",
        "at": iso(_now_ms()),
        "last_event_id": format_id(last_event_id) if last_event_id is not None else None,
        "detail": detail,
    }
    return ServerSentEvent(data=orjson.dumps(data).decode(), event="gap", sep=SEP)


def end_event(reason: str) -> ServerSentEvent:
    data = {"kind": "end", "reason": reason, "at": iso(_now_ms())}
    return ServerSentEvent(data=orjson.dumps(data).decode(), event="end", sep=SEP)


def heartbeat_event() -> ServerSentEvent:
    return ServerSentEvent(comment="heartbeat", sep=SEP)


class _Run:
    def __init__(self, live: LiveEvents, org_id: str, hotel_id: str | None, watch: Watch) -> None:
        self.live, self.org_id, self.hotel_id = live, org_id, hotel_id
        self.watch = watch
        self.sent: EventId | None = None  # the newest id passed (shown or not)
        self.ended = False
        self.sub: Subscription | None = None
        self.stopped: str | None = None  # why the relay stops this stream (shutting_down)

    def stop(self, reason: str) -> None:
        """End the stream with `reason` as soon as it can send: at once when it waits for
        events, after its replay, or on subscribing if it has not yet."""
        self.stopped = reason
        if self.sub is not None:
            self.sub.end(reason)

    async def events(self, after: EventId | None) -> AsyncGenerator[ServerSentEvent, None]:
        """The stream's events, from `after` (the `Last-Event-ID`) when given."""
        try:
            sub = await self.live.subscribe(self.org_id, self.hotel_id)
        except Exception:  # Redis is away: say so rather than stream nothing
            log.warning("live events: cannot subscribe now", exc_info=True)
            yield end_event("unavailable")
            return
        self.sub = sub
        if self.stopped is not None:  # stopped while subscribing
            sub.end(self.stopped)
        watch = self.watch
        self.live.rechecks.join(watch.key, watch.fetch, sub, watch.apply)
        try:
            yield ServerSentEvent(comment="open", sep=SEP)
            self.sent = after
            if after is not None:
                async for event in self._replay(sub, after):
                    yield event
            if not self.ended:
                async for event in self._follow(sub):
                    yield event
        finally:
            self.sub = None
            self.live.rechecks.leave(watch.key, sub)
            self.live.unsubscribe(sub)

    def _new(self, entry: Entry) -> bool:
        """Whether `entry` comes after everything passed so far (and note it as passed)."""
        if self.sent is not None and entry.key <= self.sent:
            return False
        self.sent = entry.key
        return True

    async def _replay(self, sub: Subscription, after: EventId) -> AsyncIterator[ServerSentEvent]:
        try:
            resumed = await self.live.resume(self.org_id, after)
        except Exception:
            log.warning("live events: cannot read the log now", exc_info=True)
            self.ended = True
            yield end_event("unavailable")
            return
        if resumed.gap:
            yield gap_event(after)
            # Everything held follows, whatever `after` said: an id newer than any issued
            # (a clock stepped back, another relay's id) must not hide what comes next.
            self.sent = None
        for entry in resumed.entries:
            if self._new(entry) and sub.wants(entry) and self.watch.visible(entry):
                yield entry_event(entry)

    async def _follow(self, sub: Subscription) -> AsyncIterator[ServerSentEvent]:
        watch = self.watch
        while True:
            if time.time() >= watch.expires_at:
                yield end_event("token_expired")
                return
            # Woken by an event, an end (a re-check's verdict, the relay stopping), or
            # the node's tick (service.TICK_S) to look at the clock.
            item = await sub.next()
            if isinstance(item, str):
                yield end_event(item)
                return
            if item is GAP:
                yield gap_event(self.sent)
            elif isinstance(item, Entry) and self._new(item) and watch.visible(item):
                yield entry_event(item)


class EventStream(EventSourceResponse):
    """One watcher's SSE answer: heartbeats, `end` when the server stops, and a client
    that stopped reading cut, quietly, after `send_timeout`.

    Only heartbeats (comment lines) are sent under that timeout: a timer for every
    event cost a thousand streams as much as the events themselves (bench/sse_fanout.py),
    and a client that stopped reading is found all the same, by its next heartbeat
    send, which cancels the stream's other sends with it.
    """

    def __init__(
        self,
        live: LiveEvents,
        org_id: str,
        hotel_id: str | None,
        after: EventId | None,
        watch: Watch,
        *,
        heartbeat: float,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        """The stream of `org_id` (of `hotel_id` when given), from `after` when given;
        `on_close` is called once the answer is over, however it ends."""
        self._on_close = on_close
        run = _Run(live, org_id, hotel_id, watch)
        stopping = anyio.Event()  # set by sse-starlette when the server is stopping

        async def farewell() -> None:
            # Its own task: the generator may be waiting for events, which only its
            # subscription can wake it from.
            await stopping.wait()
            run.stop("shutting_down")

        super().__init__(
            run.events(after),
            ping=heartbeat,
            ping_message_factory=heartbeat_event,
            send_timeout=2 * heartbeat,
            sep=SEP,
            data_sender_callable=farewell,
            shutdown_event=stopping,
            shutdown_grace_period=SHUTDOWN_GRACE_S,
        )

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if message.get("body", b"")[:1] == b":":
            await super()._send_with_timeout(send, message)
        else:
            await send(message)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except SendTimeoutError:
            log.info("live events: a client stopped reading; its stream was cut")
        finally:
            self._on_close()
