"""The notification schedule's decisions, table by table (bellhop_bridge.notify_core)."""

from __future__ import annotations

import pytest
from bellhop_bridge.notify_core import (
    Change,
    Channel,
    Contact,
    Outcome,
    Policy,
    Retry,
    Row,
    RowState,
    Schedule,
    dedupe_key,
)

Q, S, SB = RowState.QUEUED, RowState.SENDING, RowState.STANDBY
NOW = 1_000_000


def contact(cid: str, channels: int = 1, after_s: int = 60, **filters: frozenset[str]) -> Contact:
    return Contact(
        cid,
        cid.title(),
        filters.get("kinds", frozenset()),
        filters.get("severities", frozenset()),
        after_s,
        tuple(Channel(f"{cid}-ch{i}", f"json://h/{cid}/{i}") for i in range(channels)),
    )


SCHEDULE = Schedule(Retry(base_s=2, max_s=10, attempts=3))


@pytest.mark.parametrize(
    ("attempts", "delay_ms"), [(1, 2000), (2, 4000), (3, 8000), (4, 10_000), (9, 10_000)]
)
def test_the_retry_delay_doubles_up_to_its_cap(attempts: int, delay_ms: int) -> None:
    assert SCHEDULE.retry.delay_ms(attempts) == delay_ms


def test_a_raised_alert_queues_each_wanting_contact_in_escalation_order() -> None:
    policy = Policy(
        (
            contact("desk", channels=2, after_s=60),
            contact("gas-only", kinds=frozenset({"gas"})),
            contact("manager", after_s=300, severities=frozenset({"critical"})),
            contact("owner"),
        )
    )
    slots = SCHEDULE.raised("a1", "breach", "critical", policy, NOW)
    assert [(s.contact_id, s.position, s.step, s.state, s.due_ms) for s in slots] == [
        ("desk", 0, 0, Q, NOW),
        ("desk", 1, 0, SB, NOW),  # tried only if the first channel fails
        ("manager", 0, 1, Q, NOW + 60_000),  # after the desk's 60 s
        ("owner", 0, 2, Q, NOW + 360_000),  # after the manager's 300 s more
    ]
    assert SCHEDULE.raised("a2", "breach", "warning", Policy((policy.contacts[1],)), NOW) == []


def test_the_dedupe_key_names_transition_contact_and_channel() -> None:
    keys = {dedupe_key("h", "a", "raised", c, ch) for c in ("c1", "c2") for ch in ("x", "y")}
    assert len(keys) == 4
    assert dedupe_key("h", "a", "raised", "c1", "x") == dedupe_key("h", "a", "raised", "c1", "x")


@pytest.mark.parametrize(
    ("alert_state", "has_channel", "expected"),
    [
        ("raised", True, RowState.SENDING),
        ("acknowledged", True, RowState.CANCELLED),  # acknowledging stops escalation
        ("cleared", True, RowState.CANCELLED),
        (None, True, RowState.CANCELLED),
        ("raised", False, RowState.CANCELLED),  # the channel left the policy
    ],
)
def test_a_due_row_is_sent_only_while_its_alert_is_raised(
    alert_state: str | None, has_channel: bool, expected: RowState
) -> None:
    channel = Channel("c", "json://h/") if has_channel else None
    assert Schedule.due(alert_state, channel) is expected


def rows(*states: RowState, attempts: int = 1) -> list[Row]:
    return [Row(i, "desk", i, state, attempts if i == 0 else 0) for i, state in enumerate(states)]


@pytest.mark.parametrize(
    ("outcome", "attempts", "siblings", "expected"),
    [
        # delivered: the later channels are never tried
        (
            Outcome.SENT,
            1,
            (S, SB, SB),
            [Change(0, RowState.SENT), Change(1, RowState.SKIPPED), Change(2, RowState.SKIPPED)],
        ),
        # failed with attempts left: the same channel again, backed off
        (Outcome.FAILED, 1, (S, SB), [Change(0, Q, NOW + 2000)]),
        (Outcome.FAILED, 2, (S, SB), [Change(0, Q, NOW + 4000)]),
        # failed for good: the next channel at once
        (Outcome.FAILED, 3, (S, SB, SB), [Change(0, RowState.FAILED), Change(1, Q, NOW)]),
        (Outcome.FAILED, 3, (S,), [Change(0, RowState.FAILED)]),
        # the sender died mid-send: never again on this channel, the next one instead
        (Outcome.UNKNOWN, 1, (S, SB), [Change(0, RowState.UNKNOWN), Change(1, Q, NOW)]),
        # the next channel was cancelled (acknowledged meanwhile): nothing to queue
        (Outcome.FAILED, 3, (S, RowState.CANCELLED), [Change(0, RowState.FAILED)]),
    ],
)
def test_after_a_send(
    outcome: Outcome, attempts: int, siblings: tuple[RowState, ...], expected: list[Change]
) -> None:
    found = rows(*siblings, attempts=attempts)
    assert SCHEDULE.outcome(found[0], found, outcome, NOW) == expected


def test_an_acknowledgement_cancels_only_what_is_not_sent() -> None:
    found = rows(RowState.SENT, Q, SB, S, RowState.FAILED)
    assert Schedule.acknowledged(found) == [
        Change(1, RowState.CANCELLED),
        Change(2, RowState.CANCELLED),
    ]


def test_a_policy_survives_its_json() -> None:
    policy = Policy((contact("desk", 2, kinds=frozenset({"gas", "breach"})), contact("owner")))
    assert Policy.from_json(policy.to_json()) == policy
    assert Policy.from_json(None) == Policy()
