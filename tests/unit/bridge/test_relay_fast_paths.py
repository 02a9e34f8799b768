"""The relay's fast paths for a catch-up's batches decide exactly as the event-by-event
rules they stand in for: the window and order checks of a batch (`RelayConnection`),
which events are new (`Dedup`), and a telemetry point's checks in `Plan`."""

from __future__ import annotations

import collections
import math
import os
from dataclasses import dataclass

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import (
    BatchReceived,
    CloseCode,
    Closed,
    Dedup,
    ProtocolError,
    RelayConnection,
    frames,
)
from bellhop_cloud.bridge import plan as plan_module
from bellhop_cloud.bridge.plan import Plan
from hypothesis import given, settings
from hypothesis import strategies as st

BULK, PRIORITY = int(bridge_pb2.LANE_BULK), int(bridge_pb2.LANE_PRIORITY)
UNKNOWN_LANE = 7
SECONDS_MIN, SECONDS_MAX = -62_135_596_800, 253_402_300_799


# -- the batch checks and the window ---------------------------------------------------------
class Reference:
    """The relay's window and order checks as they were, one event at a time."""

    def __init__(self, window_events: int, window_bytes: int) -> None:
        self.window_events, self.window_bytes = window_events, window_bytes
        self.received = {BULK: 0, PRIORITY: 0}
        self.acked = {BULK: 0, PRIORITY: 0}
        self.pending: dict[int, collections.deque[tuple[int, int]]] = {
            BULK: collections.deque(),
            PRIORITY: collections.deque(),
        }
        self.pending_bytes = 0

    def batch(self, events: list[bridge_pb2.OutboxEvent]) -> None:
        for event in events:
            lane = event.lane
            if lane not in self.received:
                raise ProtocolError(CloseCode.BAD_FRAME, f"an event on unknown lane {lane}")
            frames.check_count(event.seq, "seq")
            if event.seq <= self.received[lane]:
                raise ProtocolError(
                    CloseCode.OUT_OF_ORDER,
                    f"lane {lane}: seq {event.seq} after {self.received[lane]}",
                )
            if event.WhichOneof("payload") is None:
                raise ProtocolError(CloseCode.BAD_FRAME, f"event {event.seq} carries nothing")
            self.received[lane] = event.seq
            size = event.ByteSize()
            self.pending[lane].append((event.seq, size))
            self.pending_bytes += size
        unacked = sum(len(p) for p in self.pending.values())
        if unacked > self.window_events:
            raise ProtocolError(
                CloseCode.WINDOW_EXCEEDED, f"{unacked} events sent and not acknowledged"
            )
        if self.pending_bytes > self.window_bytes:
            raise ProtocolError(
                CloseCode.WINDOW_EXCEEDED,
                f"{self.pending_bytes} bytes of events sent and not acknowledged",
            )

    def ack(self, lane: int, seq: int) -> None:
        if seq <= self.acked[lane]:
            return
        pending = self.pending[lane]
        while pending and pending[0][0] <= seq:
            self.pending_bytes -= pending.popleft()[1]
        self.acked[lane] = seq


@dataclass(frozen=True)
class Step:
    """A batch (lane, seq step, payload size or None for an empty event, per event) or,
    with `ack` set, an acknowledgement of a lane up to a fraction of what it received."""

    events: tuple[tuple[int, int, int | None], ...] = ()
    ack: tuple[int, float] | None = None


def outbox_event(lane: int, seq: int, size: int | None) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=lane)  # type: ignore[arg-type]
    if size is not None:
        event.device_event.device_id = "r1-door"
        event.device_event.data.update({"note": "x" * size})
    return event


def opened(window_events: int, window_bytes: int) -> RelayConnection:
    relay = RelayConnection(
        now=0.0, nonce=os.urandom(32), window_events=window_events, window_bytes=window_bytes
    )
    hello = bridge_pb2.Hello(protocol_version=frames.PROTOCOL_VERSION, gateway_id="g", hotel_id="h")
    relay.receive_data(frames.encode(bridge_pb2.Frame(hello=hello)), 0.0)
    relay.challenge(0.0)
    proof = bridge_pb2.Proof(signature=b"s" * 64)
    relay.receive_data(frames.encode(bridge_pb2.Frame(proof=proof)), 0.0)
    relay.welcome({}, 0.0)
    relay.events_received()
    relay.data_to_send()
    return relay


lanes = st.sampled_from([BULK, BULK, BULK, PRIORITY, UNKNOWN_LANE])
seq_steps = st.one_of(st.integers(1, 3), st.integers(-2, 0), st.just(2**63))
sizes = st.one_of(st.integers(0, 200), st.none())
batch_steps = st.builds(Step, st.lists(st.tuples(lanes, seq_steps, sizes), max_size=12).map(tuple))
ack_steps = st.builds(Step, ack=st.tuples(st.sampled_from([BULK, PRIORITY]), st.floats(0.0, 1.0)))
# Mostly well-formed single-lane batches, as a real gateway sends.
clean_steps = st.builds(
    Step,
    st.lists(
        st.tuples(st.just(BULK), st.integers(1, 2), st.integers(0, 60)), min_size=1, max_size=12
    ).map(tuple),
)


@settings(max_examples=400, deadline=None)
@given(
    steps=st.lists(st.one_of(batch_steps, clean_steps, clean_steps, ack_steps), max_size=12),
    window_events=st.integers(1, 30),
    window_bytes=st.integers(50, 3000),
)
def test_a_batch_is_taken_or_refused_as_event_by_event_checks_would(
    steps: list[Step], window_events: int, window_bytes: int
) -> None:
    relay, reference = opened(window_events, window_bytes), Reference(window_events, window_bytes)
    next_seq = {BULK: 0, PRIORITY: 0, UNKNOWN_LANE: 0}
    for step in steps:
        if step.ack is not None:
            lane, fraction = step.ack
            low, high = reference.acked[lane], reference.received[lane]
            seq = low + round((high - low) * fraction)
            relay.ack(lane, seq, 1.0)
            reference.ack(lane, seq)
            continue
        events = []
        for lane, delta, size in step.events:
            seq = delta if delta == 2**63 else max(next_seq[lane] + delta, 0)
            next_seq[lane] = min(seq, 2**63 - 1)
            events.append(outbox_event(lane, seq, size))
        relay.receive_data(frames.encode_batch(e.SerializeToString() for e in events), 1.0)
        (outcome,) = relay.events_received()
        refused = None
        try:
            reference.batch(events)
        except ProtocolError as exc:
            refused = (exc.code, exc.message)
        if refused is not None:
            assert isinstance(outcome, Closed)
            assert (outcome.code, outcome.message) == refused
            return
        assert isinstance(outcome, BatchReceived)
        assert [(e.lane, e.seq) for e in outcome.events] == [(e.lane, e.seq) for e in events]


def test_a_partial_ack_frees_exactly_the_events_it_covers() -> None:
    relay = opened(window_events=5, window_bytes=10_000)
    relay.receive_data(
        frames.encode_batch(outbox_event(BULK, s, 10).SerializeToString() for s in (1, 2, 3, 4, 5)),
        1.0,
    )
    assert isinstance(relay.events_received()[0], BatchReceived)
    relay.ack(BULK, 2, 1.0)
    relay.ack(BULK, 3, 1.0)
    relay.ack(BULK, 3, 1.0)  # again: nothing more
    batch = [outbox_event(BULK, s, 10) for s in (6, 7, 8)]
    relay.receive_data(frames.encode_batch(e.SerializeToString() for e in batch), 1.0)
    assert isinstance(relay.events_received()[0], BatchReceived)  # 5 in flight: the window
    relay.receive_data(frames.encode_batch([outbox_event(BULK, 9, 10).SerializeToString()]), 1.0)
    (closed,) = relay.events_received()
    assert isinstance(closed, Closed)
    assert (closed.code, closed.message) == (
        CloseCode.WINDOW_EXCEEDED,
        "6 events sent and not acknowledged",
    )


@given(st.lists(st.tuples(st.integers(1, 2**63 - 1), sizes), max_size=30))
def test_events_are_sized_as_the_gateway_counted_them(events: list[tuple[int, int | None]]) -> None:
    datas = [outbox_event(BULK, seq, size).SerializeToString() for seq, size in events]
    assert frames.event_sizes(frames.encode_batch(datas)) == [len(d) for d in datas]


def test_a_frame_whose_events_cannot_be_sized_as_they_came_is_sized_event_by_event() -> None:
    """Two batches in one frame with another body between them: the parser keeps the
    last batch only, so the bytes on the wire hold more events than the frame."""
    first, second, third = (outbox_event(BULK, s, n) for s, n in ((1, 500), (2, 40), (3, 60)))
    data = (
        frames.encode_batch([first.SerializeToString()])
        + frames.encode(bridge_pb2.Frame(heartbeat=bridge_pb2.Heartbeat()))
        + frames.encode_batch([second.SerializeToString(), third.SerializeToString()])
    )
    assert len(frames.event_sizes(data)) == 3
    relay = opened(window_events=10, window_bytes=second.ByteSize() + third.ByteSize())
    relay.receive_data(data, 1.0)
    (batch,) = relay.events_received()
    assert isinstance(batch, BatchReceived)
    assert [e.seq for e in batch.events] == [2, 3]
    # Exactly at the window: one byte more is refused.
    fourth = outbox_event(BULK, 4, 0)
    relay.receive_data(frames.encode_batch([fourth.SerializeToString()]), 1.0)
    (closed,) = relay.events_received()
    assert isinstance(closed, Closed)
    assert closed.code is CloseCode.WINDOW_EXCEEDED


# -- which events are new ----------------------------------------------------------------
def reference_fresh(
    last_applied: dict[int, int], events: list[bridge_pb2.OutboxEvent]
) -> list[bridge_pb2.OutboxEvent]:
    out = []
    for event in events:
        if event.seq > last_applied.get(event.lane, 0):
            last_applied[event.lane] = event.seq
            out.append(event)
    return out


@settings(max_examples=400, deadline=None)
@given(
    batches=st.lists(
        st.lists(
            st.tuples(st.sampled_from([BULK, BULK, PRIORITY]), st.integers(0, 30)), max_size=10
        ),
        max_size=6,
    ),
    bulk=st.integers(0, 20),
    priority=st.integers(0, 20),
    rising=st.booleans(),
)
def test_dedup_picks_the_same_events_as_one_at_a_time(
    batches: list[list[tuple[int, int]]], bulk: int, priority: int, rising: bool
) -> None:
    dedup = Dedup({BULK: bulk, PRIORITY: priority})
    reference = {BULK: bulk, PRIORITY: priority}
    highest: dict[int, int] = {}
    for pairs in batches:
        if rising:  # one lane, rising, as nearly every batch within a connection
            lane = pairs[0][0] if pairs else BULK
            events = [outbox_event(lane, seq, 0) for seq in sorted({s for _, s in pairs})]
        else:
            events = [outbox_event(lane, seq, 0) for lane, seq in pairs]
        expected = reference_fresh(reference, events)
        assert dedup.fresh(events) == expected
        assert dedup.last_applied == reference
        for event in events:
            highest[event.lane] = max(highest.get(event.lane, 0), event.seq)
        assert dedup.highest == highest


# -- a telemetry point's checks ----------------------------------------------------------
def reference_plan(events: list[bridge_pb2.OutboxEvent], hotel_id: str) -> Plan:
    """`Plan.of` without its fast path: every event through `_add`."""
    plan = Plan(hotel_id)
    for event in events:
        plan.last_seq[event.lane] = max(plan.last_seq.get(event.lane, 0), event.seq)
        try:
            plan._add(event)
        except plan_module._Skip as why:
            plan.rejected.append(f"seq {event.seq}: {why}")
    return plan


def telemetry(
    seq: int, device_id: str, metric: str, value: float, seconds: int, nanos: int
) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_BULK)
    p = event.telemetry
    p.device_id, p.metric, p.value = device_id, metric, value
    p.ts.seconds, p.ts.nanos = seconds, nanos
    return event


device_ids = st.one_of(
    st.sampled_from(["r1-env", "th-101", "gas-9", "ü-sensor", 'a"b,c{d}\\e', "x" * 64]),
    st.text(max_size=70),
)
metrics = st.one_of(
    st.sampled_from(["humidity", "co2", "gas_ppm", "t", "a" * 32]),
    st.text(alphabet="abcxyz_09AZ -\x00", max_size=34),
)
seconds = st.one_of(
    st.integers(SECONDS_MIN - 2, SECONDS_MIN + 2),
    st.integers(SECONDS_MAX - 2, SECONDS_MAX + 2),
    st.integers(1_600_000_000, 1_800_000_000),
    st.integers(-(2**63), 2**63 - 1),
)
nanos = st.one_of(
    st.sampled_from([0, 1, 999_999, 1_000_000, 999_999_999, 1_000_000_000, -1]),
    st.integers(-(2**31), 2**31 - 1),
)
points = st.builds(
    telemetry,
    st.integers(1, 2**63 - 1),
    device_ids,
    metrics,
    st.floats(allow_nan=True, allow_infinity=True),
    seconds,
    nanos,
)


def state_event(seq: int) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_PRIORITY)
    event.state.device_id = "th-101"
    event.state.values.update({"setpoint": 21.0})
    event.state.updated_at.FromMilliseconds(1_700_000_000_000)
    return event


def columns(plan: Plan) -> tuple[list[str], list[str], list[int], list[float]]:
    p = plan.telemetry
    return p.device_id, p.metric, p.ts, p.value


@settings(max_examples=600, deadline=None)
@given(
    st.lists(
        st.one_of(points, points, points, st.builds(state_event, st.integers(0, 100))),
        max_size=20,
    )
)
def test_the_telemetry_fast_path_plans_and_refuses_exactly_as_the_general_path(
    events: list[bridge_pb2.OutboxEvent],
) -> None:
    expected = reference_plan(events, "htl_1")
    for _ in range(2):  # the second time, every valid id and name is already known
        plan = Plan.of(events, "htl_1")
        assert columns(plan) == columns(expected)
        assert plan.rejected == expected.rejected
        assert plan.last_seq == expected.last_seq
        assert plan.states == expected.states
    assert all(math.isfinite(v) for v in plan.telemetry.value)


def test_the_known_ids_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "_KNOWN_MAX", 8)
    monkeypatch.setattr(plan_module, "_known_ids", set())
    events = [
        telemetry(seq, f"sensor-{seq}", "humidity", 1.0, 1_700_000_000, 0) for seq in range(1, 101)
    ]
    plan = Plan.of(events, "htl_1")
    assert plan.telemetry.device_id == [f"sensor-{seq}" for seq in range(1, 101)]
    assert len(plan_module._known_ids) <= 8
    # An id refused is never remembered, however often it comes.
    bad = [telemetry(seq, "bad id", "humidity", 1.0, 1_700_000_000, 0) for seq in (1, 2)]
    assert len(Plan.of(bad, "htl_1").rejected) == 2
    assert "bad id" not in plan_module._known_ids
