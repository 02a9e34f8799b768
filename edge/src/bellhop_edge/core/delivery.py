"""Which broker messages may be acknowledged, held back or must be sent again.

A PUBACK from the gateway means "stored": a QoS 1 message is acknowledged
only once every write it caused is committed. This core keeps that promise
without touching a socket or the store; the gateway feeds it events and
carries out the actions it returns.

    delivery = Delivery(max_pending=50_000)
    delivery.connected()                          # the link opened a new socket
    delivery.admit(message, qos, writer.pending)  # -> HANDLE, HOLD or DROP
    ...handle it: its writes are store tickets first..last...
    delivery.handled(message, qos, first, last)   # -> actions
    delivery.finished(through, failed)            # the writer's report -> actions

Actions:

- `Acknowledge(message)`: every write of the message (and of every message
  before it) is committed, on the connection it arrived on: send its PUBACK.
- `Unstored(message)`: a write failed; it is not acknowledged, and the broker
  sends it again, so forget having seen it (replay memory).
- `Reconnect(delay_s)`: drop the connection and come back after `delay_s`:
  a broker resends unacknowledged messages only on a new connection. Once
  per connection, backing off from `retry_min_s` to `retry_max_s` while
  writes keep failing.

Message ids are valid only on the connection they came in on, so a message
whose connection is gone is never acknowledged (the broker resends it on the
current one). Hold-back: while the writer has `max_pending // 2` writes
waiting, messages are held in arrival order and released once it is down
to `max_pending // 4`. QoS 1 messages are always held (the broker's in-flight
window bounds them); QoS 0 ones, at most once by MQTT's own contract, are
dropped and counted past `backlog_max`.
"""

from __future__ import annotations

import bisect
import collections
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = [
    "Acknowledge",
    "Action",
    "Admission",
    "Delivery",
    "DeliveryStats",
    "Reconnect",
    "Unstored",
]

M = TypeVar("M")

BACKLOG_MAX: Final = 100_000
RETRY_MIN_S: Final = 1.0
RETRY_MAX_S: Final = 60.0
# Failed tickets remembered while messages wait; failures are rare, this is a bound.
_FAILED_KEPT: Final = 100_000


class Admission(enum.Enum):
    HANDLE = "handle"  # handle it now
    HOLD = "hold"  # kept; `release` hands it back when the writer has caught up
    DROP = "drop"  # a QoS 0 message past the backlog's bound: count it as overloaded


@dataclass(frozen=True, slots=True)
class Acknowledge(Generic[M]):
    message: M


@dataclass(frozen=True, slots=True)
class Unstored(Generic[M]):
    message: M


@dataclass(frozen=True, slots=True)
class Reconnect:
    delay_s: float


Action = Acknowledge[M] | Unstored[M] | Reconnect


@dataclass(slots=True)
class DeliveryStats:
    held: int = 0  # messages held back while the writer was behind
    dropped: int = 0  # QoS 0 messages dropped past the backlog's bound
    unstored: int = 0  # QoS 1 messages whose writes failed (sent again by the broker)
    reconnects: int = 0


@dataclass(frozen=True, slots=True)
class _Waiting(Generic[M]):
    last: int  # the last store ticket that must be done first
    first: int  # the message's own first ticket
    message: M
    connection: int


class Delivery(Generic[M]):
    """The acknowledgement and hold-back bookkeeping of one broker link."""

    def __init__(
        self,
        *,
        max_pending: int,
        backlog_max: int = BACKLOG_MAX,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        if max_pending < 4 or backlog_max < 1 or not 0 < retry_min_s <= retry_max_s:
            raise ValueError("max_pending >= 4, backlog_max >= 1, 0 < retry_min_s <= retry_max_s")
        self.high_water = max_pending // 2
        self.low_water = max_pending // 4
        self.stats = DeliveryStats()
        self._backlog_max = backlog_max
        self._retry_min = retry_min_s
        self._retry_max = retry_max_s
        self._backlog: collections.deque[M] = collections.deque()
        self._waiting: collections.deque[_Waiting[M]] = collections.deque()
        self._finished = 0  # every store ticket up to this one is done
        self._failed: list[int] = []  # failed tickets, ascending
        self._connection = 0
        self._reconnect_asked = -1  # the connection a Reconnect was last returned for
        self._failures = 0  # reconnects in a row for failed writes

    # -- the link ---------------------------------------------------------------------
    @property
    def connection(self) -> int:
        return self._connection

    def connected(self) -> None:
        """A new socket: earlier message ids mean nothing on it."""
        self._connection += 1

    # -- hold-back --------------------------------------------------------------------
    def admit(self, message: M, qos: int, pending: int) -> Admission:
        """Handle now, hold, or drop; `pending` is what the writer has not committed."""
        if not self._backlog and pending < self.high_water:
            return Admission.HANDLE
        if qos == 0 and len(self._backlog) >= self._backlog_max:
            self.stats.dropped += 1
            return Admission.DROP
        self._backlog.append(message)
        self.stats.held += 1
        return Admission.HOLD

    @property
    def holding(self) -> int:
        return len(self._backlog)

    def release(self, pending: int) -> M | None:
        """The next held message, if the writer has room for it (below the high water)."""
        if not self._backlog or pending >= self.high_water:
            return None
        return self._backlog.popleft()

    # -- acknowledgement --------------------------------------------------------------
    def handled(self, message: M, qos: int, first: int, last: int) -> list[Action[M]]:
        """`message` was handled; its writes are store tickets `first..last`.

        `last` is the newest ticket submitted so far (`first - 1` if it wrote
        nothing), so acknowledgements go out in arrival order.
        """
        if qos == 0:
            return []
        self._waiting.append(_Waiting(last, first, message, self._connection))
        return self._settle()

    def finished(self, through: int, failed: Sequence[int] = ()) -> list[Action[M]]:
        """The writer finished every ticket up to `through`; `failed` (ascending) failed."""
        self._finished = max(self._finished, through)
        if failed:
            if len(self._failed) > _FAILED_KEPT:
                del self._failed[: len(self._failed) - _FAILED_KEPT // 2]
            self._failed.extend(failed)
        return self._settle()

    def writer_died(self) -> list[Action[M]]:
        """Nothing waiting will ever be committed."""
        actions: list[Action[M]] = []
        while self._waiting:
            actions += self._fail(self._waiting.popleft())
        self._failed.clear()
        return actions

    def _settle(self) -> list[Action[M]]:
        actions: list[Action[M]] = []
        waiting = self._waiting
        while waiting and waiting[0].last <= self._finished:
            entry = waiting.popleft()
            if self._failed_between(entry.first, entry.last):
                actions += self._fail(entry)
            else:
                self._failures = 0
                if entry.connection == self._connection:
                    actions.append(Acknowledge(entry.message))
        if not waiting:
            self._failed.clear()
        return actions

    def _fail(self, entry: _Waiting[M]) -> list[Action[M]]:
        self.stats.unstored += 1
        actions: list[Action[M]] = [Unstored(entry.message)]
        current = self._connection
        if entry.connection == current and self._reconnect_asked != current:
            self._reconnect_asked = current
            delay = min(self._retry_max, self._retry_min * 2 ** min(self._failures, 16))
            self._failures += 1
            self.stats.reconnects += 1
            actions.append(Reconnect(delay))
        return actions

    def _failed_between(self, first: int, last: int) -> bool:
        failed = self._failed
        i = bisect.bisect_left(failed, first)
        return i < len(failed) and failed[i] <= last
