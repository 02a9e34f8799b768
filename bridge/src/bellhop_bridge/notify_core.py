"""The delivery bookkeeping of alert notifications, without I/O.

Shared by the relay's worker (bellhop_cloud.notify) and the gateway's local
channel (bellhop_edge.notify), so that both follow one schedule.

A hotel's `Policy` lists contacts in escalation order, each with the alerts it
wants (kinds, severities), its channels in the order they are tried, and how long
to wait for an acknowledgement before the next contact is told. `Schedule` is fed
what happened (an alert raised, a row coming due, a send's outcome, the time) and
answers with what to do: the rows to queue, whether to send or cancel, and the
state and due time of each row afterwards. The drivers do the reading, writing
and sending.

Row states: `queued` (waits for `due_ms`), `standby` (a later channel, tried only
if the ones before it fail), `sending` (claimed under a lease), and the final
`sent`, `failed`, `unknown` (the sender died mid-send: never sent again on that
channel), `skipped` (an earlier channel delivered) and `cancelled` (the alert was
acknowledged or cleared first, or the channel was removed from the policy).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, Protocol

__all__ = [
    "AlertFacts",
    "Change",
    "Channel",
    "Contact",
    "Outcome",
    "Policy",
    "Retry",
    "Row",
    "RowState",
    "Schedule",
    "Slot",
    "dedupe_key",
    "message",
]

RAISED: Final = "raised"  # the one alert transition that notifies


class RowState(StrEnum):
    QUEUED = "queued"
    STANDBY = "standby"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self not in (RowState.QUEUED, RowState.STANDBY, RowState.SENDING)


PENDING: Final = (RowState.QUEUED.value, RowState.STANDBY.value)


class Outcome(StrEnum):
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"  # found `sending` with its lease run out: the sender died


@dataclass(frozen=True, slots=True)
class Channel:
    channel_id: str
    url: str  # an Apprise URL, secrets and all


@dataclass(frozen=True, slots=True)
class Contact:
    contact_id: str
    name: str
    kinds: frozenset[str]  # empty: every kind
    severities: frozenset[str]  # empty: every severity
    escalate_after_s: int  # unacknowledged this long after this contact: the next one
    channels: tuple[Channel, ...]

    def wants(self, kind: str, severity: str) -> bool:
        return (not self.kinds or kind in self.kinds) and (
            not self.severities or severity in self.severities
        )


@dataclass(frozen=True, slots=True)
class Policy:
    contacts: tuple[Contact, ...] = ()

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | None) -> Policy:
        if not value:
            return cls()
        return cls(
            tuple(
                Contact(
                    c["id"],
                    c["name"],
                    frozenset(c.get("kinds", ())),
                    frozenset(c.get("severities", ())),
                    int(c["escalate_after_s"]),
                    tuple(Channel(ch["id"], ch["url"]) for ch in c["channels"]),
                )
                for c in value.get("contacts", ())
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "contacts": [
                {
                    "id": c.contact_id,
                    "name": c.name,
                    "kinds": sorted(c.kinds),
                    "severities": sorted(c.severities),
                    "escalate_after_s": c.escalate_after_s,
                    "channels": [{"id": ch.channel_id, "url": ch.url} for ch in c.channels],
                }
                for c in self.contacts
            ]
        }

    def channel(self, contact_id: str, channel_id: str) -> Channel | None:
        for contact in self.contacts:
            if contact.contact_id == contact_id:
                return next((ch for ch in contact.channels if ch.channel_id == channel_id), None)
        return None


def dedupe_key(hotel_id: str, alert_id: str, transition: str, contact_id: str, channel: str) -> str:
    """What the table's unique key holds, as one text (also sent to webhooks as a header,
    so that a receiver can drop the copy a retry after a late answer may bring)."""
    return f"{hotel_id}/{alert_id}/{transition}/{contact_id}/{channel}"


class AlertFacts(Protocol):
    """What a notification says of its alert (a stored alert row, either side)."""

    @property
    def hotel_id(self) -> str: ...
    @property
    def alert_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def room_id(self) -> str | None: ...
    @property
    def message(self) -> str | None: ...
    @property
    def raised_at(self) -> int: ...  # Unix ms


def message(alert: AlertFacts) -> tuple[str, str]:
    """The title and body of an alert's notification."""
    what = f"{alert.severity} {str(alert.kind).replace('_', ' ')}"
    where = f" in room {alert.room_id}" if alert.room_id else ""
    raised = datetime.fromtimestamp(alert.raised_at / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = "\n".join(
        (
            alert.message or what,
            f"Device {alert.device_id}{where}, hotel {alert.hotel_id}.",
            f"Alert {alert.alert_id}, raised {raised}. Acknowledge it to stop escalation.",
        )
    )
    return f"Bellhop: {what}{where}", body


@dataclass(frozen=True, slots=True)
class Slot:
    """A row to queue for an alert transition."""

    alert_id: str
    transition: str
    contact_id: str
    channel_id: str
    step: int
    position: int
    state: RowState
    due_ms: int


@dataclass(frozen=True, slots=True)
class Row:
    """What the schedule needs to know of a stored row."""

    row_id: int
    contact_id: str
    position: int
    state: RowState
    attempts: int


@dataclass(frozen=True, slots=True)
class Change:
    row_id: int
    state: RowState
    due_ms: int | None = None  # None: leave it


@dataclass(frozen=True, slots=True)
class Retry:
    """Exponential back-off per channel, then the next channel."""

    base_s: float = 5.0
    max_s: float = 300.0
    attempts: int = 3  # per channel

    def delay_ms(self, attempts: int) -> int:
        """The wait after the `attempts`-th failed attempt."""
        return int(min(self.max_s, self.base_s * 2 ** max(attempts - 1, 0)) * 1000)


class Schedule:
    """The decisions; every method is a pure function of its arguments and `now_ms`."""

    def __init__(self, retry: Retry) -> None:
        self.retry = retry

    def raised(
        self, alert_id: str, kind: str, severity: str, policy: Policy, now_ms: int
    ) -> list[Slot]:
        """The rows an alert just raised gets: each contact that wants it, in order, due
        once every contact before it had its `escalate_after_s`; its first channel
        queued, the others on standby."""
        slots: list[Slot] = []
        due = now_ms
        step = 0
        for contact in policy.contacts:
            if not contact.wants(kind, severity) or not contact.channels:
                continue
            for position, channel in enumerate(contact.channels):
                state = RowState.QUEUED if position == 0 else RowState.STANDBY
                slots.append(
                    Slot(
                        alert_id,
                        RAISED,
                        contact.contact_id,
                        channel.channel_id,
                        step,
                        position,
                        state,
                        due,
                    )
                )
            due += contact.escalate_after_s * 1000
            step += 1
        return slots

    @staticmethod
    def due(alert_state: str | None, channel: Channel | None) -> RowState:
        """A queued row that came due: `sending` (send it now), or `cancelled` when its
        alert is no longer raised (acknowledged, cleared: escalation stops) or its
        channel left the policy."""
        if alert_state != RAISED or channel is None:
            return RowState.CANCELLED
        return RowState.SENDING

    def outcome(
        self, row: Row, siblings: Iterable[Row], outcome: Outcome, now_ms: int
    ) -> list[Change]:
        """After a send of `row` (`siblings`: the contact's other rows for the same
        transition): the row's new state and what follows for its other channels."""
        rest = sorted((s for s in siblings if s.row_id != row.row_id), key=lambda s: s.position)
        standby = [s for s in rest if s.state is RowState.STANDBY]
        if outcome is Outcome.SENT:
            return [Change(row.row_id, RowState.SENT)] + [
                Change(s.row_id, RowState.SKIPPED) for s in standby
            ]
        if outcome is Outcome.FAILED and row.attempts < self.retry.attempts:
            return [Change(row.row_id, RowState.QUEUED, now_ms + self.retry.delay_ms(row.attempts))]
        # Given up on this channel (or its fate is unknown: never sent on it again).
        final = RowState.FAILED if outcome is Outcome.FAILED else RowState.UNKNOWN
        changes = [Change(row.row_id, final)]
        if standby:
            changes.append(Change(standby[0].row_id, RowState.QUEUED, now_ms))
        return changes

    @staticmethod
    def acknowledged(rows: Sequence[Row]) -> list[Change]:
        """The alert was acknowledged (or cleared): whatever is not sent yet never is."""
        return [Change(r.row_id, RowState.CANCELLED) for r in rows if r.state.value in PENDING]
