"""The alert book: the lifecycle of every open alert, without I/O.

    raised ──acknowledge──> acknowledged ──clear──> cleared
       └─────────────────────clear─────────────────────┘

One open alert per condition, keyed by (kind, device_id): raising a condition
that is already raised or acknowledged returns None, so duplicates never pile
up. Clearing ends the alert; a later raise of the same condition is a new
alert with a new id. The book returns every changed `Alert`; the caller
persists it through the store writer (which also puts it in the outbox).

Acknowledging is harmless twice and after the alert cleared; `ack_outcome`
names what an acknowledgement does to an alert as it stands, which the LAN
API reports as the cloud does (acknowledged, already_acknowledged,
already_cleared).

Errors (from `bellhop_edge.errors`):

    UnknownAlertError   no open or recently cleared alert has this id (NotFound)
    AlertClearedError   the alert was already cleared; too late to acknowledge (Conflict)
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import StrEnum

from bellhop_edge.core.model import Alert, AlertKind, AlertState
from bellhop_edge.core.rules import RaiseAlert
from bellhop_edge.errors import AlertClearedError, UnknownAlertError

__all__ = ["AckOutcome", "AlertBook", "ack_outcome", "new_alert_id"]


def new_alert_id() -> str:
    return uuid.uuid4().hex


class AckOutcome(StrEnum):
    """What an acknowledgement did (the cloud's words for the same outcomes)."""

    ACKNOWLEDGED = "acknowledged"
    ALREADY_ACKNOWLEDGED = "already_acknowledged"
    ALREADY_CLEARED = "already_cleared"


def ack_outcome(alert: Alert) -> AckOutcome:
    """What acknowledging `alert`, as it stands before the call, does."""
    return {
        AlertState.RAISED: AckOutcome.ACKNOWLEDGED,
        AlertState.ACKNOWLEDGED: AckOutcome.ALREADY_ACKNOWLEDGED,
        AlertState.CLEARED: AckOutcome.ALREADY_CLEARED,
    }[alert.state]


class AlertBook:
    """Open alerts by id and by condition; remembers recently cleared ones."""

    def __init__(
        self, *, new_id: Callable[[], str] = new_alert_id, remember_cleared: int = 10_000
    ) -> None:
        self._new_id = new_id
        self._remember = remember_cleared
        self._by_id: dict[str, Alert] = {}
        self._by_condition: dict[tuple[AlertKind, str], str] = {}
        self._cleared: OrderedDict[str, Alert] = OrderedDict()

    @classmethod
    def from_open(
        cls, alerts: Iterable[Alert], *, new_id: Callable[[], str] = new_alert_id
    ) -> AlertBook:
        """Load the open alerts kept by the store at start-up."""
        book = cls(new_id=new_id)
        for alert in alerts:
            if alert.state is AlertState.CLEARED:
                continue
            previous = book._by_condition.get((alert.kind, alert.device_id))
            if previous is not None:
                # Two open alerts for one condition cannot be made by this book;
                # keep the newest so that the condition can still clear.
                book._by_id.pop(previous)
            book._by_id[alert.alert_id] = alert
            book._by_condition[(alert.kind, alert.device_id)] = alert.alert_id
        return book

    # -- queries ----------------------------------------------------------------------
    def get(self, alert_id: str) -> Alert | None:
        return self._by_id.get(alert_id) or self._cleared.get(alert_id)

    def open_alerts(self) -> list[Alert]:
        """Oldest first."""
        return sorted(self._by_id.values(), key=lambda a: (a.raised_at, a.alert_id))

    def conditions(self) -> set[tuple[AlertKind, str]]:
        """The (kind, device_id) pairs with an open alert: what `RuleEngine` starts from."""
        return set(self._by_condition)

    # -- transitions ------------------------------------------------------------------
    def raise_(self, action: RaiseAlert, room_id: str | None, now_ms: int) -> Alert | None:
        """A new alert, or None when this condition already has an open one."""
        key = (action.kind, action.device_id)
        if key in self._by_condition:
            return None
        alert = Alert(
            alert_id=self._new_id(),
            kind=action.kind,
            severity=action.severity,
            state=AlertState.RAISED,
            device_id=action.device_id,
            room_id=room_id,
            message=action.message,
            raised_at=now_ms,
        )
        self._by_id[alert.alert_id] = alert
        self._by_condition[key] = alert.alert_id
        return alert

    def acknowledge(self, alert_id: str, by: str, note: str, now_ms: int) -> Alert:
        """Mark an open alert as seen by a person.

        Acknowledging twice is not an error: the first acknowledgement stands
        and is returned (the cloud may relay one that staff already made here).
        """
        alert = self._by_id.get(alert_id)
        if alert is None:
            cleared = self._cleared.get(alert_id)
            if cleared is not None:
                raise AlertClearedError(cleared.alert_id)
            raise UnknownAlertError(alert_id)
        if alert.state is AlertState.ACKNOWLEDGED:
            return alert
        alert = dataclasses.replace(
            alert,
            state=AlertState.ACKNOWLEDGED,
            acknowledged_at=now_ms,
            acknowledged_by=by,
            note=note or None,
        )
        self._by_id[alert_id] = alert
        return alert

    def clear(self, kind: AlertKind, device_id: str, now_ms: int) -> Alert | None:
        """End the open alert of this condition; None when there is none."""
        alert_id = self._by_condition.pop((kind, device_id), None)
        if alert_id is None:
            return None
        alert = dataclasses.replace(
            self._by_id.pop(alert_id), state=AlertState.CLEARED, cleared_at=now_ms
        )
        self._cleared[alert_id] = alert
        while len(self._cleared) > self._remember:
            self._cleared.popitem(last=False)
        return alert
