"""One event stream across path switches: a sans-I/O core that dedupes and decides gaps.

The client reads events from the LAN (the gateway's ``WatchEvents``, which cannot resume)
or the cloud (the relay's SSE stream, which resumes after an event id) and feeds every one
to :class:`EventMerger`, which says what to yield. Events carry a natural ``key`` equal on
both paths for the same change, so the merger drops an event whose key it has seen.

Memory is bounded: the merger remembers the ``memory`` (default 10,000) most recently seen
keys (least recently seen forgotten first). A change delivered again after more than that
many other distinct changes would be yielded twice; a switch window is far shorter.

Switches, and what the client does around them:

- **LAN -> cloud** (the gateway stopped answering on the LAN): the client reads the cloud's
  newest page of events (JSON page mode, no ``Last-Event-ID``) and hands it to
  :meth:`EventMerger.fill`, which yields the page's events not seen yet and published no
  earlier than the *mark* minus ``margin`` (the mark: the newest event time seen on the LAN,
  or when the stream was opened if it brought none). It yields a :class:`Gap` first when the
  page reports one, or when the page is full and its oldest event is newer than the mark:
  the relay's log no longer holds all it published since. The client then follows the cloud
  stream with ``Last-Event-ID`` = the page's ``last_event_id``
  (:attr:`EventMerger.resume_id`), so nothing published after the page is missed.

  *Limitation:* the relay keeps the newest ``events_replay`` (1000) events per
  **organisation** (docs/live-events.md), while the page holds only this hotel's. A page
  that is not full therefore cannot tell whether other hotels' events trimmed the log past
  the mark: events of this hotel published after the mark may be gone without a
  ``gap``. Part of this is covered: when the client followed the cloud before and the last
  cloud id it saw was published no earlier than the mark minus ``margin``
  (:meth:`EventMerger.trim_check_id`), the client asks the relay for the events after that
  id; the relay's ``gap`` flag on that answer says exactly whether the log was trimmed past
  it, and ``fill(..., trimmed=True)`` then yields a :class:`Gap`. A client that has not
  been on the cloud recently (or never) has no such id and keeps the limitation.
- **cloud -> LAN** (the gateway answers again): the client opens the LAN stream first and
  keeps the cloud stream open, feeding both; a :class:`Handover` watches the gateway's
  ``cloud_backlog`` (events it recorded that the relay has not acknowledged) and says when
  the cloud stream may close: once the backlog was seen at 0 and ``grace_s`` more passed (so
  what the gateway recorded before the LAN stream opened has come through the cloud). The
  handover starts when the LAN stream is open: when the gateway confirmed its subscription
  to the event bus (the ``bellhop-subscribed`` header of ``WatchEvents``; every event from
  then on reaches the LAN stream), or, from a gateway that does not send it, once the LAN
  transport stopped waiting for it; the grace then also covers the subscription. If the
  backlog never reaches 0 within ``max_s`` (the gateway cannot reach the relay), the cloud
  stream closes with a :class:`Gap`: what the gateway recorded before the LAN stream opened
  and still holds is missed. A gateway that does not report a backlog closes after
  ``grace_s``.
- **LAN stream broken, LAN back** (the gateway restarted; the LAN has no resume): with a
  cloud, this is a LAN -> cloud switch followed by a cloud -> LAN one. Without a cloud the
  client yields :meth:`EventMerger.lan_gap`.

Events only the LAN carries (telemetry, routine device events) cannot be recovered from the
cloud; events of the kinds both paths carry are never lost without a :class:`Gap`, with
this caveat: the relay publishes one event per device (state, desired, registry) or per
alert for each batch the gateway's bridge sends, the latest one, so intermediate changes
sent in one batch never reach the cloud stream. The cloud gives the last value, not every
step: a state change the LAN did not deliver before a switch may arrive only as the later
state that replaced it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from bellhop_sdk.models import Event, EventPage, Gap, Path

__all__ = ["EventMerger", "Handover", "HandoverDecision"]

DEFAULT_MEMORY = 10_000
DEFAULT_MARGIN = timedelta(seconds=10)


class EventMerger:
    """Dedupes events across paths (bounded memory) and decides gaps on a switch."""

    def __init__(self, *, memory: int = DEFAULT_MEMORY, margin: timedelta = DEFAULT_MARGIN) -> None:
        if memory < 1:
            raise ValueError("memory must hold at least one key")
        self.memory = memory
        self.margin = margin
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()
        self._mark: datetime | None = None  # newest LAN event time, or when the LAN opened
        self._newest: datetime | None = None  # newest event time seen on any path
        self._resume_id: str | None = None  # the cloud id to resume after

    @property
    def resume_id(self) -> str | None:
        """The `Last-Event-ID` to open the cloud stream with (the last cloud id known)."""
        return self._resume_id

    @property
    def mark(self) -> datetime | None:
        """Up to when the LAN stream is known to have delivered (see the module docstring)."""
        return self._mark

    def remembered(self) -> int:
        return len(self._seen)

    def lan_opened(self, now: datetime) -> None:
        """A LAN stream opened. What came before it was covered by the stream that served
        until now (cloud) or is history, so the mark moves up to the newest event seen,
        or to `now` (the client's clock) when no event was seen at all."""
        floor = self._newest if self._newest is not None else now
        if self._mark is None or floor > self._mark:
            self._mark = floor

    def accept(self, item: Event | Gap) -> Event | Gap | None:
        """A live event from either stream: itself when new, None when already yielded.
        Gaps pass through."""
        if isinstance(item, Gap):
            if item.last_event_id is not None:
                self._resume_id = item.last_event_id
            return item
        if item.event_id is not None:
            self._resume_id = item.event_id
        if not self._remember(item.key):
            return None
        if self._newest is None or item.at > self._newest:
            self._newest = item.at
        if item.path is Path.LAN and (self._mark is None or item.at > self._mark):
            self._mark = item.at
        return item

    def trim_check_id(self, now: datetime) -> str | None:
        """The cloud id to ask the relay about before a fill (see the module docstring):
        the last one seen, if it was published no earlier than the mark minus the margin
        (its first part is the relay's publish time in ms); otherwise None."""
        if self._resume_id is None:
            return None
        head, _, _ = self._resume_id.partition("-")
        if not head.isdigit():
            return None
        mark = self._mark if self._mark is not None else now
        floor_ms = int((mark - self.margin).timestamp() * 1000)
        return self._resume_id if int(head) >= floor_ms else None

    def fill(
        self, page: EventPage, *, limit: int, now: datetime, trimmed: bool | None = None
    ) -> list[Event | Gap]:
        """LAN -> cloud: what to yield from the cloud's newest page (oldest first), `limit`
        being the page size asked for; `trimmed` the relay's `gap` for the events after
        `trim_check_id()` (None: not asked). Afterwards `resume_id` is the page's last id."""
        out: list[Event | Gap] = []
        mark = self._mark if self._mark is not None else now
        events = page.events  # oldest first, in the relay's id order
        floor = mark - self.margin
        full = len(events) >= limit
        # The margin again: the relay's and the gateway's clocks may differ by that much.
        short = full and bool(events) and min(e.at for e in events) > floor
        if page.gap or short or trimmed:
            reason = "cloud_log_short" if short and not page.gap else "cloud_log_gap"
            out.append(Gap(reason, now, Path.CLOUD, self._resume_id))
        for event in events:
            if event.at < floor:
                self._remember(event.key)  # history: may come again on the stream, not new
                continue
            taken = self.accept(event)
            if taken is not None:
                out.append(taken)
        if page.last_event_id is not None:
            self._resume_id = page.last_event_id
        return out

    def lan_gap(self, now: datetime, reason: str = "lan_reconnected") -> Gap:
        """The LAN stream broke and there is no cloud to fill from."""
        return Gap(reason, now, Path.LAN)

    def _remember(self, key: tuple[str, ...]) -> bool:
        """Records `key`; False when it was remembered already."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self.memory:
            self._seen.popitem(last=False)
        return True


@dataclass(frozen=True, slots=True)
class HandoverDecision:
    """Whether the cloud stream may close (with a gap first), else when to decide again
    (`check_at`, monotonic seconds: read the backlog again then, or just decide once the
    grace has passed)."""

    close: bool
    gap: bool = False
    check_at: float | None = None


class Handover:
    """cloud -> LAN: when the cloud stream may close (module docstring). Times are the
    client's monotonic seconds; `started`: when the LAN stream was open (subscribed)."""

    def __init__(
        self, started: float, *, grace_s: float = 1.0, max_s: float = 30.0, poll_s: float = 0.2
    ) -> None:
        self.started = started
        self.grace_s = grace_s
        self.max_s = max_s
        self.poll_s = poll_s
        self._drained_at: float | None = None
        self._unknown = False

    def backlog(self, count: int | None, now: float) -> HandoverDecision:
        """The gateway's backlog read at `now` (None: the gateway does not say)."""
        if count is None:
            self._unknown = True
        elif count == 0 and self._drained_at is None:
            self._drained_at = now
        return self.decide(now)

    def decide(self, now: float) -> HandoverDecision:
        if self._drained_at is None and self._unknown:
            self._drained_at = self.started
        if self._drained_at is not None:
            until = self._drained_at + self.grace_s
            if now >= until:
                return HandoverDecision(close=True)
            return HandoverDecision(close=False, check_at=until)
        deadline = self.started + self.max_s
        if now >= deadline:
            return HandoverDecision(close=True, gap=True)
        return HandoverDecision(close=False, check_at=min(now + self.poll_s, deadline))
