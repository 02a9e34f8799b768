"""Replay memory: what the broker or a device sends again is recognised, nothing else."""

from __future__ import annotations

from bellhop_devices.messages import (
    Ack,
    AckStatus,
    Event,
    EventKind,
    StateReport,
    Status,
    Telemetry,
)
from bellhop_edge.core.replay import ReplayMemory, replay_key

NOW = 1_800_000_000_000
DEV = "r101-env"


def key(message: Telemetry | Event | StateReport) -> int:
    found = replay_key(message)
    assert found is not None
    return found


def test_keys_tell_messages_apart_by_what_makes_them_that_message() -> None:
    t = key(Telemetry(DEV, NOW, 1, {"temperature": 21.0}))
    assert t == key(Telemetry(DEV, NOW, 1, {"temperature": 21.0}))
    # Same millisecond, another seq: another message. Another device: another message.
    assert t != key(Telemetry(DEV, NOW, 2, {"temperature": 21.0}))
    assert t != key(Telemetry("other", NOW, 1, {"temperature": 21.0}))
    door_open = key(Event(DEV, NOW, EventKind.DOOR, {"open": True}))
    door_closed = key(Event(DEV, NOW, EventKind.DOOR, {"open": False}))
    button = key(Event(DEV, NOW, EventKind.BUTTON, {}))
    assert len({door_open, door_closed, button}) == 3
    # Data key order does not matter.
    a = key(StateReport(DEV, NOW, {"on": True, "level": 3}))
    assert a == key(StateReport(DEV, NOW, {"level": 3, "on": True}))
    assert -(2**63) <= a < 2**63  # fits SQLite's INTEGER
    # Status and acks are idempotent: no key.
    assert replay_key(Status(DEV, True)) is None
    assert replay_key(Ack(DEV, "c1", AckStatus.OK)) is None


def test_a_qos1_key_is_remembered_in_the_tail_for_the_broker_s_redelivery() -> None:
    memory = ReplayMemory(tail=4, per_device=1)
    for k in (1, 2, 3):
        memory.remember(DEV, k)
    # Pushed out of the device's own window (trimmed in bulk), still in the tail.
    assert memory.seen(DEV, 1)
    for k in range(10, 20):
        memory.remember("other", k)
    assert not memory.seen(DEV, 1)


def test_a_device_s_own_window_catches_its_retransmissions() -> None:
    memory = ReplayMemory(tail=1, per_device=4)
    for k in range(1, 5):
        memory.remember(DEV, k)
    assert all(memory.seen(DEV, k) for k in range(1, 5))
    assert not memory.seen("other", 1)


def test_restored_receipts_and_forgetting() -> None:
    memory = ReplayMemory(tail=3)
    memory.restore([1, 2, 3, 4])  # oldest first: the newest three are kept
    assert not memory.seen(DEV, 1)
    assert all(memory.seen(DEV, k) for k in (2, 3, 4))
    memory.forget(DEV, 3)
    assert not memory.seen(DEV, 3)

    # A removed device's own window goes; keys pushed out of the tail go with it.
    small = ReplayMemory(tail=1, per_device=8)
    small.remember(DEV, 5)
    for k in range(10, 13):
        small.remember("other", k)
    assert small.seen(DEV, 5)
    small.drop_device(DEV)
    assert not small.seen(DEV, 5)
