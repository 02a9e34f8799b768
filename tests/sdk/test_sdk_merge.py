"""EventMerger and Handover without sockets: dedupe, fills on a switch, gaps, handover."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bellhop_sdk.merge import EventMerger, Handover, HandoverDecision
from bellhop_sdk.models import Event, EventPage, Gap, Path
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def lan(n: int, t: float) -> Event:
    """Change `n` made at `t`, as the LAN carries it."""
    return Event("state", ("state", "d1", str(n)), "h1", "101", at(t), {"n": n}, Path.LAN)


def cloud(n: int, t: float, published: float | None = None) -> Event:
    """Change `n` made at `t`, as the relay publishes it (at `published`, id = n)."""
    when = at(published if published is not None else t)
    return Event(
        "state", ("state", "d1", str(n)), "h1", "101", when, {"n": n}, Path.CLOUD, f"{n}-0"
    )


def page(events: list[Event], *, gap: bool = False, last: str | None = None) -> EventPage:
    last_id = last if last is not None else (events[-1].event_id if events else None)
    return EventPage(tuple(events), gap, last_id)


def numbers(items: list[Event | Gap | None]) -> list[int | str]:
    return [i.reason if isinstance(i, Gap) else i.data["n"] for i in items if i is not None]


# -- dedupe -------------------------------------------------------------------------------


def test_the_same_change_on_both_paths_is_yielded_once() -> None:
    m = EventMerger()
    assert m.accept(lan(1, 1)) is not None
    assert m.accept(cloud(1, 1, published=1.2)) is None
    assert m.accept(cloud(2, 2)) is not None
    assert m.accept(lan(2, 2)) is None
    assert m.resume_id == "2-0"


def test_memory_is_bounded_and_forgets_the_least_recently_seen() -> None:
    m = EventMerger(memory=3)
    for n in range(3):
        m.accept(lan(n, n))
    assert m.accept(lan(0, 0)) is None  # seen again: now the most recent
    m.accept(lan(3, 3))  # forgets 1, the least recently seen
    assert m.remembered() == 3
    assert m.accept(lan(0, 0)) is None
    assert m.accept(lan(1, 1)) is not None


def test_gaps_pass_through_and_keep_the_resume_id() -> None:
    m = EventMerger()
    m.accept(cloud(5, 5))
    gap = Gap("relay_gap", at(6), Path.CLOUD, "5-0")
    assert m.accept(gap) is gap
    assert m.resume_id == "5-0"


def test_memory_must_hold_a_key() -> None:
    with pytest.raises(ValueError, match="memory"):
        EventMerger(memory=0)


# -- LAN -> cloud fills (table) -------------------------------------------------------------

FILLS = [
    # name, LAN saw up to change k at time k, the page, page limit, expected yield
    ("page overlaps the LAN: only new ones", 3, [cloud(n, n) for n in range(1, 7)], 100, [4, 5, 6]),
    ("page empty: nothing, no gap", 3, [], 100, []),
    (
        "full page reaching back past the mark and its margin: no gap",
        3,
        [cloud(n, n) for n in range(1, 7)],
        6,
        [4, 5, 6],
    ),
    (
        "full page reaching back past the mark but not its margin: gap",
        3,
        [cloud(n, n) for n in range(2, 7)],
        5,
        ["cloud_log_short", 4, 5, 6],
    ),
    (
        "full page starting after the mark: gap first",
        3,
        [cloud(n, n) for n in range(6, 9)],
        3,
        ["cloud_log_short", 6, 7, 8],
    ),
    (
        "short page starting after the mark: the log holds it all",
        3,
        [cloud(n, n) for n in range(6, 9)],
        100,
        [6, 7, 8],
    ),
    (
        "published late (the relay's time) but made before the break: deduped",
        3,
        [cloud(n, n, published=n + 4) for n in range(1, 6)],
        100,
        [4, 5],
    ),
    (
        "history older than the mark minus the margin is not new",
        30,
        [cloud(1, 1), cloud(31, 31)],
        100,
        [31],
    ),
    (
        "unseen within the margin: yielded (made before the break, published late)",
        30,
        [cloud(29, 29)],
        100,
        [29],
    ),
]


@pytest.mark.parametrize(
    ("name", "k", "events", "limit", "expected"), FILLS, ids=[f[0] for f in FILLS]
)
def test_fill_after_losing_the_lan(
    name: str, k: int, events: list[Event], limit: int, expected: list[int | str]
) -> None:
    m = EventMerger(margin=timedelta(seconds=2))
    m.lan_opened(at(0))
    for n in range(1, k + 1):
        if n != 29:  # change 29 never reached the LAN stream in the last case
            m.accept(lan(n, n))
    assert numbers(list(m.fill(page(events), limit=limit, now=at(k + 1)))) == expected
    if events:
        assert m.resume_id == events[-1].event_id


def test_fill_reports_the_relays_own_gap() -> None:
    m = EventMerger()
    m.lan_opened(at(0))
    m.accept(lan(1, 1))
    out = m.fill(page([cloud(2, 2)], gap=True), limit=100, now=at(3))
    assert numbers(list(out)) == ["cloud_log_gap", 2]


def test_fill_without_any_lan_event_uses_when_the_lan_opened() -> None:
    m = EventMerger(margin=timedelta(seconds=1))
    m.lan_opened(at(100))
    out = m.fill(page([cloud(1, 50), cloud(2, 99.5), cloud(3, 101)]), limit=100, now=at(102))
    assert numbers(list(out)) == [2, 3]


def test_page_last_id_is_the_resume_id_even_when_nothing_is_visible() -> None:
    m = EventMerger()
    m.lan_opened(at(0))
    m.fill(page([], last="77-3"), limit=100, now=at(1))
    assert m.resume_id == "77-3"


def test_lan_reopened_moves_the_mark_to_the_newest_event_seen() -> None:
    m = EventMerger(margin=timedelta(0))
    m.lan_opened(at(0))
    m.accept(lan(1, 1))
    m.accept(cloud(5, 5))  # came through the cloud meanwhile
    m.lan_opened(at(1000))  # the phone's clock: not used when an event time is known
    assert m.mark == at(5)
    out = m.fill(page([cloud(n, n) for n in range(3, 8)]), limit=5, now=at(9))
    assert numbers(list(out)) == [6, 7]


def test_lan_gap_names_the_lan() -> None:
    gap = EventMerger().lan_gap(at(1))
    assert (gap.reason, gap.path, gap.at) == ("lan_reconnected", Path.LAN, at(1))


# -- the switch as a whole: every change once, or a gap ---------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    changes=st.integers(1, 60),
    data=st.data(),
)
def test_every_change_arrives_once_or_a_gap_is_yielded(changes: int, data: st.DataObject) -> None:
    """Changes 1..n are made one a second; the relay publishes each after a delay (clocks
    may differ by less than the margin). The LAN delivers changes up to `k` then breaks;
    the client fills from the page of the newest `limit` the relay published by the time
    of the switch, then follows the cloud stream after the page's last id."""
    delays = data.draw(st.lists(st.floats(-2, 8), min_size=changes, max_size=changes))
    k = data.draw(st.integers(0, changes))
    switch_at = data.draw(st.floats(k, changes + 10))
    limit = data.draw(st.integers(1, 70))
    dupes = data.draw(st.booleans())
    # The relay's log, in publish order: (published, n); ids follow that order.
    published = sorted((max(0.0, n + delays[n - 1]), n) for n in range(1, changes + 1))
    log = [
        Event("state", ("state", "d1", str(n)), "h1", None, at(t), {"n": n}, Path.CLOUD, f"{i}-0")
        for i, (t, n) in enumerate(published)
    ]
    m = EventMerger(margin=timedelta(seconds=10))
    m.lan_opened(at(0))
    out: list[Event | Gap] = []
    for n in range(1, k + 1):
        taken = m.accept(lan(n, n))
        if taken is not None:
            out.append(taken)
    held = [e for e in log if e.at <= at(switch_at)]
    out += m.fill(
        page(held[-limit:], last=held[-1].event_id if held else None),
        limit=limit,
        now=at(switch_at),
    )
    resume = int(m.resume_id.split("-")[0]) if m.resume_id is not None else -1
    rest: list[Event] = [e for e in log if int(str(e.event_id).split("-")[0]) > resume]
    if dupes:  # the LAN stream lingering, and the cloud repeating part of the page
        rest = [*(lan(n, n) for n in range(1, k + 1)), *held[-limit:][:3], *rest]
    for event in rest:
        taken = m.accept(event)
        if taken is not None:
            out.append(taken)
    got = [i.data["n"] for i in out if isinstance(i, Event)]
    assert len(got) == len(set(got)), "a change was yielded twice"
    if not any(isinstance(i, Gap) for i in out):
        assert sorted(got) == list(range(1, changes + 1)), "a change was lost without a gap"


# -- cloud -> LAN handover ------------------------------------------------------------------


def test_handover_closes_the_cloud_a_grace_after_the_backlog_drained() -> None:
    h = Handover(10.0, grace_s=1.0, max_s=30.0, poll_s=0.2)
    assert h.backlog(5, 10.0) == HandoverDecision(close=False, check_at=10.2)
    assert h.backlog(0, 10.5) == HandoverDecision(close=False, check_at=11.5)
    assert h.backlog(3, 11.0) == HandoverDecision(
        close=False, check_at=11.5
    )  # drained once: enough
    assert h.decide(11.5) == HandoverDecision(close=True)


def test_handover_that_never_drains_closes_with_a_gap() -> None:
    h = Handover(0.0, grace_s=1.0, max_s=5.0, poll_s=1.0)
    assert h.backlog(9, 4.5) == HandoverDecision(close=False, check_at=5.0)
    assert h.backlog(9, 5.0) == HandoverDecision(close=True, gap=True)


def test_handover_without_a_backlog_figure_waits_the_grace() -> None:
    h = Handover(0.0, grace_s=2.0)
    assert h.backlog(None, 0.5) == HandoverDecision(close=False, check_at=2.0)
    assert h.decide(2.0) == HandoverDecision(close=True)


# -- a log trimmed by other hotels' events ---------------------------------------------------


def cloud_id(t: float, n: int = 0) -> str:
    """A relay id published at `t`: `<ms>-<n>`."""
    return f"{int(at(t).timestamp() * 1000)}-{n}"


def test_a_recent_cloud_id_is_checked_and_an_old_one_is_not() -> None:
    m = EventMerger(margin=timedelta(seconds=10))
    assert m.trim_check_id(at(0)) is None  # never on the cloud: nothing to ask about
    m.accept(Gap("gap", at(0), Path.CLOUD, cloud_id(95)))  # the last cloud id seen
    m.lan_opened(at(100))
    m.accept(lan(1, 104))  # the mark: 104; the floor: 94
    assert m.trim_check_id(at(110)) == cloud_id(95)
    m.accept(lan(2, 106))  # the floor: 96, after the id's publish time
    assert m.trim_check_id(at(110)) is None
    m.accept(Gap("gap", at(0), Path.CLOUD, "not-an-id"))
    assert m.trim_check_id(at(110)) is None


def test_fill_yields_a_gap_when_the_log_was_trimmed_past_the_last_cloud_id() -> None:
    # A short page (another hotel's events filled the organisation's log): without the
    # relay's answer about the last cloud id this looks complete; with it, it is a gap.
    for trimmed, wanted in ((None, [2]), (False, [2]), (True, ["cloud_log_gap", 2])):
        m = EventMerger()
        m.lan_opened(at(0))
        m.accept(lan(1, 1))
        out = m.fill(page([cloud(2, 2)]), limit=100, now=at(3), trimmed=trimmed)
        assert numbers(list(out)) == wanted, trimmed
