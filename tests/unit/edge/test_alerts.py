"""The alert book: raised -> acknowledged -> cleared, one open alert per condition."""

from __future__ import annotations

import itertools

import pytest
from bellhop_edge.core.alerts import AlertBook
from bellhop_edge.core.model import AlertKind, AlertSeverity, AlertState
from bellhop_edge.core.rules import RaiseAlert
from bellhop_edge.errors import AlertClearedError, Conflict, NotFound, UnknownAlertError

NOW = 1_800_000_000_000
GAS = AlertKind.GAS


@pytest.fixture
def book() -> AlertBook:
    counter = itertools.count(1)
    return AlertBook(new_id=lambda: f"a{next(counter)}")


@pytest.fixture
def dev(test_name: str) -> str:
    return f"{test_name}-dev"


def gas(dev: str) -> RaiseAlert:
    return RaiseAlert(GAS, dev, AlertSeverity.CRITICAL, "gas 900 ppm")


def test_raise_once_then_duplicates_are_dropped(book: AlertBook, dev: str) -> None:
    alert = book.raise_(gas(dev), "101", NOW)
    assert alert is not None
    assert (alert.alert_id, alert.state, alert.room_id, alert.raised_at) == (
        "a1",
        AlertState.RAISED,
        "101",
        NOW,
    )
    assert (alert.kind, alert.severity, alert.message) == (
        GAS,
        AlertSeverity.CRITICAL,
        "gas 900 ppm",
    )
    assert book.raise_(gas(dev), "101", NOW + 1) is None
    assert book.open_alerts() == [alert]
    # Another device, or another kind on the same device, is another condition.
    assert book.raise_(gas(f"{dev}-2"), "102", NOW) is not None
    offline = RaiseAlert(AlertKind.DEVICE_OFFLINE, dev, AlertSeverity.WARNING, "offline")
    assert book.raise_(offline, "101", NOW) is not None


def test_acknowledge_then_clear(book: AlertBook, dev: str) -> None:
    raised = book.raise_(gas(dev), "101", NOW)
    assert raised is not None
    acked = book.acknowledge(raised.alert_id, "staff:ana", "on my way", NOW + 5)
    assert (acked.state, acked.acknowledged_by, acked.note, acked.acknowledged_at) == (
        AlertState.ACKNOWLEDGED,
        "staff:ana",
        "on my way",
        NOW + 5,
    )
    assert book.raise_(gas(dev), "101", NOW + 6) is None  # acknowledged is still open
    again = book.acknowledge(raised.alert_id, "cloud:bob", "", NOW + 7)
    assert again == acked  # the first acknowledgement stands
    cleared = book.clear(GAS, dev, NOW + 10)
    assert cleared is not None
    assert (cleared.alert_id, cleared.state, cleared.cleared_at) == (
        "a1",
        AlertState.CLEARED,
        NOW + 10,
    )
    assert cleared.acknowledged_by == "staff:ana"
    assert book.open_alerts() == []


def test_clear_straight_from_raised_and_a_reraise_is_a_new_alert(book: AlertBook, dev: str) -> None:
    first = book.raise_(gas(dev), None, NOW)
    assert first is not None
    cleared = book.clear(GAS, dev, NOW + 1)
    assert cleared is not None
    assert cleared.state is AlertState.CLEARED
    assert cleared.acknowledged_at is None
    assert book.clear(GAS, dev, NOW + 2) is None
    second = book.raise_(gas(dev), None, NOW + 3)
    assert second is not None
    assert second.alert_id != first.alert_id


def test_acknowledging_a_cleared_or_unknown_alert_is_a_specific_error(
    book: AlertBook, dev: str
) -> None:
    alert = book.raise_(gas(dev), None, NOW)
    assert alert is not None
    book.clear(GAS, dev, NOW + 1)
    with pytest.raises(AlertClearedError) as cleared:
        book.acknowledge(alert.alert_id, "staff", "", NOW + 2)
    assert cleared.value.alert_id == alert.alert_id
    assert book.get(alert.alert_id).state is AlertState.CLEARED  # type: ignore[union-attr]
    assert isinstance(cleared.value, Conflict)
    with pytest.raises(UnknownAlertError) as unknown:
        book.acknowledge("nope", "staff", "", NOW)
    assert isinstance(unknown.value, NotFound)


def test_loaded_from_the_store_the_book_continues_where_it_was(book: AlertBook, dev: str) -> None:
    raised = book.raise_(gas(dev), "101", NOW)
    assert raised is not None
    acked = book.acknowledge(raised.alert_id, "staff", "", NOW + 1)
    offline = RaiseAlert(AlertKind.DEVICE_OFFLINE, dev, AlertSeverity.WARNING, "offline")
    other = book.raise_(offline, "101", NOW + 2)
    assert other is not None
    gone = book.clear(AlertKind.DEVICE_OFFLINE, dev, NOW + 3)
    assert gone is not None

    restored = AlertBook.from_open([acked, gone], new_id=lambda: "fresh")
    assert restored.open_alerts() == [acked]
    assert restored.conditions() == {(GAS, dev)}
    assert restored.raise_(gas(dev), "101", NOW + 4) is None
    assert restored.raise_(offline, "101", NOW + 4) is not None
    cleared = restored.clear(GAS, dev, NOW + 5)
    assert cleared is not None
    assert cleared.alert_id == raised.alert_id


def test_cleared_memory_is_bounded(dev: str) -> None:
    counter = itertools.count(1)
    book = AlertBook(new_id=lambda: f"a{next(counter)}", remember_cleared=2)
    for i in range(3):
        book.raise_(gas(dev), None, NOW + i)
        book.clear(GAS, dev, NOW + i)
    assert book.get("a1") is None
    assert book.get("a3") is not None
    with pytest.raises(UnknownAlertError):
        book.acknowledge("a1", "staff", "", NOW)
