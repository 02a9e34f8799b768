"""PathSelector without sockets: tables of what happened -> what it decides, and properties."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from bellhop_sdk.models import Path
from bellhop_sdk.paths import Choice, LanState, PathSelector, Switch
from hypothesis import given, settings
from hypothesis import strategies as st

LAN, CLOUD = Path.LAN, Path.CLOUD


def selector(*, lan: bool = True, cloud: bool = True, jitter: float = 0.0) -> PathSelector:
    return PathSelector(lan=lan, cloud=cloud, jitter=jitter, rng=random.Random(7))


def probe(s: PathSelector, ok: bool, now: float) -> Switch | None:
    assert s.probe_started(now)
    return s.probe_finished(ok, now)


# -- tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    lan: bool
    cloud: bool
    steps: tuple[tuple[str, float], ...]  # ("probe_ok"|"probe_fail"|"lan_down"|..., now)
    preferred: Path
    choice: Choice | None
    next_probe_at: float | None
    exclude: frozenset[Path] = frozenset()


CASES = [
    Case("fresh, both: LAN first, probed", True, True, (), LAN, Choice(LAN, True), 0.0),
    Case("fresh, cloud only", False, True, (), CLOUD, Choice(CLOUD), None),
    Case("fresh, LAN only", True, False, (), LAN, Choice(LAN, True), 0.0),
    Case("probe answers", True, True, (("probe_ok", 1.0),), LAN, Choice(LAN), None),
    Case("probe fails: cloud", True, True, (("probe_fail", 1.0),), CLOUD, Choice(CLOUD), 1.5),
    Case(
        "two failed probes: back-off doubles",
        True,
        True,
        (("probe_fail", 1.0), ("probe_fail", 1.5)),
        CLOUD,
        Choice(CLOUD),
        2.5,
    ),
    Case(
        "LAN call unreachable: cloud at once",
        True,
        True,
        (("probe_ok", 1.0), ("lan_unreachable", 2.0)),
        CLOUD,
        Choice(CLOUD),
        2.5,
    ),
    Case(
        "LAN back: preferred again",
        True,
        True,
        (("probe_ok", 1.0), ("lan_unreachable", 2.0), ("probe_ok", 2.5)),
        LAN,
        Choice(LAN),
        None,
    ),
    Case(
        "cloud unreachable while LAN down: probe now",
        True,
        True,
        (("probe_fail", 1.0), ("probe_fail", 1.5), ("cloud_unreachable", 2.0)),
        CLOUD,
        Choice(CLOUD),
        2.0,
    ),
    Case(
        "cloud unreachable while LAN up: nothing to probe",
        True,
        True,
        (("probe_ok", 1.0), ("cloud_unreachable", 2.0)),
        LAN,
        Choice(LAN),
        None,
    ),
    Case(
        "LAN down, cloud excluded: LAN after a probe",
        True,
        True,
        (("probe_fail", 1.0),),
        CLOUD,
        Choice(LAN, True),
        1.5,
        frozenset({CLOUD}),
    ),
    Case(
        "LAN up but excluded: cloud",
        True,
        True,
        (("probe_ok", 1.0),),
        LAN,
        Choice(CLOUD),
        None,
        frozenset({LAN}),
    ),
    Case(
        "both excluded: none left",
        True,
        True,
        (),
        LAN,
        None,
        0.0,
        frozenset({LAN, CLOUD}),
    ),
    Case(
        "LAN only and down: still the LAN, after a probe",
        True,
        False,
        (("probe_fail", 1.0),),
        LAN,
        Choice(LAN, True),
        1.5,
    ),
    Case(
        "cloud only: a cloud failure changes nothing",
        False,
        True,
        (("cloud_unreachable", 1.0),),
        CLOUD,
        Choice(CLOUD),
        None,
    ),
    Case(
        "a LAN answer to a call counts as up",
        True,
        True,
        (("probe_fail", 1.0), ("lan_ok", 1.2)),
        LAN,
        Choice(LAN),
        None,
    ),
    Case(
        "a second LAN failure while down keeps the schedule",
        True,
        True,
        (("probe_fail", 1.0), ("probe_fail", 1.5), ("lan_unreachable", 1.6)),
        CLOUD,
        Choice(CLOUD),
        2.5,
    ),
]


def apply(s: PathSelector, step: str, now: float) -> Switch | None:
    match step:
        case "probe_ok":
            return probe(s, True, now)
        case "probe_fail":
            return probe(s, False, now)
        case "lan_unreachable":
            return s.call_unreachable(LAN, now)
        case "cloud_unreachable":
            return s.call_unreachable(CLOUD, now)
        case "lan_ok":
            return s.call_succeeded(LAN, now)
        case "cloud_ok":
            return s.call_succeeded(CLOUD, now)
    raise AssertionError(step)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_decisions(case: Case) -> None:
    s = selector(lan=case.lan, cloud=case.cloud)
    for step, now in case.steps:
        apply(s, step, now)
    assert s.preferred is case.preferred
    assert s.choose(case.exclude) == case.choice
    assert s.next_probe_at() == case.next_probe_at


def test_switches_are_reported_once_each_way() -> None:
    s = selector()
    assert probe(s, True, 0.0) is None  # LAN was preferred already (LAN first)
    assert s.call_unreachable(LAN, 1.0) == Switch(LAN, CLOUD)
    assert s.call_unreachable(LAN, 1.1) is None
    assert probe(s, False, 1.5) is None
    assert probe(s, True, 2.5) == Switch(CLOUD, LAN)
    assert s.call_succeeded(LAN, 3.0) is None


def test_first_probe_failing_switches_to_cloud() -> None:
    s = selector()
    assert probe(s, False, 0.0) == Switch(LAN, CLOUD)


def test_backoff_doubles_to_the_cap_and_resets_when_the_lan_answers() -> None:
    s = PathSelector(lan=True, cloud=True, backoff_min_s=0.5, backoff_max_s=30.0, jitter=0.0)
    delays = []
    now = 0.0
    for _ in range(10):
        probe(s, False, now)
        due = s.next_probe_at()
        assert due is not None
        delays.append(round(due - now, 6))
        now = due
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    probe(s, True, now)
    s.call_unreachable(LAN, now + 1)
    assert s.next_probe_at() == now + 1 + 0.5


def test_jitter_shortens_each_delay_by_at_most_its_fraction() -> None:
    s = PathSelector(lan=True, cloud=True, jitter=0.5, rng=random.Random(1))
    seen = set()
    for i in range(50):
        probe(s, True, float(i))
        s.call_unreachable(LAN, float(i))
        due = s.next_probe_at()
        assert due is not None
        assert 0.25 <= due - i <= 0.5
        seen.add(round(due - i, 6))
    assert len(seen) > 10  # really random, not one fixed delay


def test_no_second_probe_while_one_is_in_flight() -> None:
    s = selector()
    assert s.probe_started(0.0)
    assert s.next_probe_at() is None
    assert not s.probe_started(0.1)
    s.probe_finished(False, 0.2)
    assert s.probe_started(1.0)


def test_cloud_only_never_probes() -> None:
    s = selector(lan=False)
    assert not s.probe_started(0.0)
    assert s.next_probe_at() is None
    assert not s.probe_due(100.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lan": False, "cloud": False}, "configure"),
        ({"lan": True, "cloud": True, "backoff_min_s": 0}, "backoff"),
        ({"lan": True, "cloud": True, "backoff_min_s": 5, "backoff_max_s": 1}, "backoff"),
        ({"lan": True, "cloud": True, "jitter": 1.0}, "jitter"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PathSelector(**kwargs)  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------

STEPS = st.sampled_from(
    ["probe", "probe_ok", "probe_fail", "lan_unreachable", "cloud_unreachable", "lan_ok"]
)


@settings(max_examples=300, deadline=None)
@given(
    lan=st.booleans(),
    cloud=st.booleans(),
    steps=st.lists(st.tuples(STEPS, st.floats(0, 100)), max_size=60),
    seed=st.integers(0, 2**32),
    jitter=st.floats(0, 0.99),
)
def test_properties_hold_after_any_history(
    lan: bool,
    cloud: bool,
    steps: list[tuple[str, float]],
    seed: int,
    jitter: float,
) -> None:
    if not (lan or cloud):
        return
    s = PathSelector(lan=lan, cloud=cloud, jitter=jitter, rng=random.Random(seed))
    in_flight = 0
    now = 0.0
    for step, dt in steps:
        now += dt
        if step == "probe":
            if s.probe_started(now):
                in_flight += 1
        elif step in ("probe_ok", "probe_fail"):
            if in_flight:
                in_flight -= 1
                s.probe_finished(step == "probe_ok", now)
        else:
            apply(s, step, now)
        # Never two probes in flight, and none at all without a LAN.
        assert in_flight <= 1
        assert in_flight == int(s.probing)
        assert lan or not s.probing
        # Back-off stays within its bounds; the next probe is never further than the cap.
        assert s.backoff_min_s <= s.backoff_s <= s.backoff_max_s
        due = s.next_probe_at()
        if due is not None:
            assert due - now <= s.backoff_max_s + 1e-9
            assert lan
            assert s.lan_state is not LanState.UP
        # Always a path when one is configured, and only a configured one.
        choice = s.choose()
        assert choice is not None
        assert choice.path is s.preferred
        assert choice.path in {p for p, on in ((LAN, lan), (CLOUD, cloud)) if on}
        # A LAN choice is probed first unless the LAN is known to answer.
        if choice.path is LAN:
            assert choice.probe_first == (s.lan_state is not LanState.UP)
        # The LAN is preferred whenever it is up; the cloud only when the LAN is down.
        if lan and s.lan_state is LanState.UP:
            assert s.preferred is LAN
        if s.preferred is CLOUD:
            assert not lan or s.lan_state is LanState.DOWN


@settings(max_examples=200, deadline=None)
@given(fails=st.integers(1, 40), seed=st.integers(0, 2**32))
def test_a_down_lan_is_always_reprobed_within_the_cap(fails: int, seed: int) -> None:
    s = PathSelector(lan=True, cloud=True, jitter=0.3, rng=random.Random(seed))
    now = 0.0
    for _ in range(fails):
        assert s.probe_started(now)
        s.probe_finished(False, now)
        due = s.next_probe_at()
        assert due is not None
        assert now < due <= now + s.backoff_max_s
        assert not s.probe_due(now)
        assert s.probe_due(due)
        now = due
    assert s.preferred is CLOUD
