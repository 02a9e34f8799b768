"""Delivery bookkeeping: events in, acknowledge / hold / resend decisions out, no sockets."""

from __future__ import annotations

import pytest
from bellhop_edge.core.delivery import (
    Acknowledge,
    Admission,
    Delivery,
    Reconnect,
    Unstored,
)


def make(max_pending: int = 100, **kwargs: float) -> Delivery[str]:
    delivery: Delivery[str] = Delivery(max_pending=max_pending, **kwargs)  # type: ignore[arg-type]
    delivery.connected()
    return delivery


def test_a_qos1_message_is_acknowledged_only_once_its_writes_are_done() -> None:
    d = make()
    assert d.handled("m1", 1, first=1, last=2) == []
    assert d.finished(1) == []  # one of its two writes is still pending
    assert d.finished(2) == [Acknowledge("m1")]


def test_a_message_that_wrote_nothing_waits_for_the_writes_before_it() -> None:
    d = make()
    assert d.handled("m1", 1, first=1, last=1) == []
    # m2 was rejected (wrote nothing): first = last + 1; acknowledgements keep their order.
    assert d.handled("m2", 1, first=2, last=1) == []
    assert d.finished(1) == [Acknowledge("m1"), Acknowledge("m2")]
    assert d.handled("m3", 1, first=2, last=1) == [Acknowledge("m3")]  # nothing pending


def test_qos0_messages_are_never_acknowledged() -> None:
    d = make()
    assert d.handled("m0", 0, first=1, last=1) == []
    assert d.finished(1) == []


def test_a_failed_write_means_no_ack_the_message_is_forgotten_and_the_link_drops() -> None:
    d = make()
    d.handled("good", 1, first=1, last=1)
    d.handled("bad", 1, first=2, last=3)
    d.handled("after", 1, first=4, last=4)
    actions = d.finished(4, failed=[3])
    assert actions == [Acknowledge("good"), Unstored("bad"), Reconnect(1.0), Acknowledge("after")]
    assert d.stats.unstored == 1


def test_reconnects_back_off_while_writes_keep_failing_and_reset_on_success() -> None:
    d = make(retry_min_s=1.0, retry_max_s=8.0)
    delays = []
    for round_ in range(6):
        d.handled(f"m{round_}", 1, first=round_ + 1, last=round_ + 1)
        for action in d.finished(round_ + 1, failed=[round_ + 1]):
            if isinstance(action, Reconnect):
                delays.append(action.delay_s)
        d.connected()  # the link came back on a new socket
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    d.handled("ok", 1, first=7, last=7)
    assert d.finished(7) == [Acknowledge("ok")]
    d.handled("bad", 1, first=8, last=8)
    assert Reconnect(1.0) in d.finished(8, failed=[8])


def test_one_reconnect_per_connection_however_many_messages_fail() -> None:
    d = make()
    for i in range(1, 4):
        d.handled(f"m{i}", 1, first=i, last=i)
    actions = d.finished(3, failed=[1, 2, 3])
    assert [a for a in actions if isinstance(a, Reconnect)] == [Reconnect(1.0)]
    assert [a for a in actions if isinstance(a, Unstored)] == [
        Unstored("m1"),
        Unstored("m2"),
        Unstored("m3"),
    ]


def test_a_message_from_an_earlier_connection_is_never_acknowledged_on_a_new_one() -> None:
    d = make()
    d.handled("old", 1, first=1, last=1)
    d.connected()  # its message id means nothing on this socket: the broker resends it
    d.handled("new", 1, first=2, last=2)
    assert d.finished(2) == [Acknowledge("new")]


def test_a_failure_on_an_old_connection_does_not_drop_the_current_one() -> None:
    d = make()
    d.handled("old", 1, first=1, last=1)
    d.connected()
    assert d.finished(1, failed=[1]) == [Unstored("old")]


def test_when_the_writer_dies_nothing_waiting_is_acknowledged() -> None:
    d = make()
    d.handled("a", 1, first=1, last=1)
    d.handled("b", 1, first=2, last=2)
    actions = d.writer_died()
    assert actions == [Unstored("a"), Reconnect(1.0), Unstored("b")]
    assert d.finished(2) == []


def test_messages_are_held_while_the_writer_is_behind_and_released_in_order() -> None:
    d = make(max_pending=100)  # high water 50, low water 25
    assert d.admit("a", 1, pending=49) is Admission.HANDLE
    assert d.admit("b", 1, pending=50) is Admission.HOLD
    # Once something is held, later messages queue behind it even if there is room.
    assert d.admit("c", 0, pending=0) is Admission.HOLD
    assert d.holding == 2
    assert d.release(pending=50) is None
    assert d.release(pending=10) == "b"
    assert d.release(pending=10) == "c"
    assert d.release(pending=10) is None
    assert d.stats.held == 2
    assert d.low_water == 25


def test_qos0_messages_past_the_backlog_bound_are_dropped_qos1_ones_are_kept() -> None:
    d = make(max_pending=100, backlog_max=2)
    assert d.admit("a", 1, pending=60) is Admission.HOLD
    assert d.admit("b", 0, pending=60) is Admission.HOLD
    assert d.admit("c", 0, pending=60) is Admission.DROP
    assert d.admit("d", 1, pending=60) is Admission.HOLD  # bounded by the broker's window
    assert d.stats.dropped == 1
    assert d.holding == 3


def test_failed_tickets_outside_a_message_do_not_count_against_it() -> None:
    d = make()
    d.handled("m1", 1, first=5, last=6)
    assert d.finished(6, failed=[2, 4, 7]) == [Acknowledge("m1")]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_pending": 2},
        {"backlog_max": 0},
        {"retry_min_s": 0},
        {"retry_min_s": 5, "retry_max_s": 1},
    ],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    settings: dict[str, float] = {"max_pending": 100, **kwargs}
    with pytest.raises(ValueError):
        Delivery(**settings)  # type: ignore[arg-type]
