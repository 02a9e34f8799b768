"""The relay's `Plan`: a batch of edge events as rows, without a database."""

from __future__ import annotations

import math

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_cloud.bridge.plan import Plan
from hypothesis import given, settings
from hypothesis import strategies as st

BULK, PRIORITY = bridge_pb2.LANE_BULK, bridge_pb2.LANE_PRIORITY


def point(
    seq: int, device: str = "r1-env", value: float = 1.0, metric: str = "humidity"
) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=BULK)
    event.telemetry.device_id = device
    event.telemetry.metric = metric
    event.telemetry.value = value
    event.telemetry.ts.FromMilliseconds(1_700_000_000_000 + seq)
    return event


def state(seq: int, device: str, setpoint: float) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=BULK)
    event.state.device_id = device
    event.state.values.update({"setpoint": setpoint})
    event.state.updated_at.FromMilliseconds(1_700_000_000_000 + seq)
    return event


def alert(seq: int, alert_id: str, alert_state: int) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=PRIORITY)
    a = event.alert
    a.alert_id, a.device_id, a.room_id, a.message = alert_id, "r1-door", "101", "door forced"
    a.kind = common_pb2.ALERT_KIND_BREACH
    a.severity = common_pb2.ALERT_SEVERITY_CRITICAL
    a.state = alert_state  # type: ignore[assignment]
    a.raised_at.FromMilliseconds(1_700_000_000_000)
    return event


def test_rows_per_table_and_each_lanes_last_sequence() -> None:
    plan = Plan.of([point(1), point(2), alert(3, "a1", common_pb2.ALERT_STATE_RAISED)], "htl_1")
    assert [row["value"] for row in plan.telemetry.rows()] == [1.0, 1.0]
    assert plan.telemetry.rows()[0]["hotel_id"] == "htl_1"
    assert plan.alerts["a1"]["state"] == "raised"
    assert plan.alerts["a1"]["kind"] == "breach"
    assert plan.last_seq == {BULK: 2, PRIORITY: 3}
    assert not plan.rejected


def test_the_latest_state_and_alert_change_win() -> None:
    plan = Plan.of(
        [
            state(1, "r1-thermostat", 20.0),
            alert(2, "a1", common_pb2.ALERT_STATE_RAISED),
            state(3, "r1-thermostat", 22.5),
            alert(4, "a1", common_pb2.ALERT_STATE_ACKNOWLEDGED),
        ],
        "htl_1",
    )
    assert plan.states["r1-thermostat"][0] == {"setpoint": 22.5}
    assert plan.alerts["a1"]["state"] == "acknowledged"


def test_a_device_removed_after_its_registration_is_only_removed() -> None:
    added = bridge_pb2.OutboxEvent(seq=1, lane=BULK)
    added.device.device_id, added.device.registered = "r1-env", True
    removed = bridge_pb2.OutboxEvent(seq=2, lane=BULK)
    removed.device.device_id = "r1-env"
    plan = Plan.of([added, removed], "htl_1")
    assert plan.removed == {"r1-env"}
    assert plan.devices == {}


def test_bad_events_are_skipped_and_counted_not_applied_half_way() -> None:
    control = point(2, device="bad\x00id")
    infinite = point(3, value=math.inf)
    badly_named = point(4, metric="Humidity!")
    empty = bridge_pb2.OutboxEvent(seq=5, lane=BULK)
    plan = Plan.of([point(1), control, infinite, badly_named, empty, point(6)], "htl_1")
    assert [row["ts"] for row in plan.telemetry.rows()] == [1_700_000_000_001, 1_700_000_000_006]
    assert len(plan.rejected) == 4
    assert all(reason.startswith("seq ") for reason in plan.rejected)
    # The lane still moves past them: a bad event never stalls its lane.
    assert plan.last_seq[BULK] == 6


def _event(
    seq: int, lane: int, device: str, metric: str, value: float, message: str, which: str
) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=lane)  # type: ignore[arg-type]
    if which == "telemetry":
        event.telemetry.device_id, event.telemetry.metric = device, metric
        event.telemetry.value = value
    elif which == "state":
        event.state.device_id = device
        event.state.values.update({metric or "k": value})
    elif which == "device":
        event.device.device_id, event.device.room_id = device, metric
        event.device.firmware, event.device.registered = message, True
    elif which == "room":
        event.room.room_id, event.room.name = device, message
    elif which == "device_event":
        event.device_event.device_id = device
        event.device_event.data.update({metric or "k": message})
    elif which == "alert":
        event.alert.alert_id, event.alert.device_id, event.alert.message = metric, device, message
    elif which == "desired":
        event.desired.device_id, event.desired.updated_by = device, message
        event.desired.values.update({metric or "k": value})
    else:
        event.gap.reason = message
    return event


texts = st.text(max_size=80)
events = st.builds(
    _event,
    st.integers(1, 2**63),
    st.sampled_from([BULK, PRIORITY]),
    texts,
    texts,
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.sampled_from(
        ["telemetry", "state", "desired", "device", "room", "device_event", "alert", "gap"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=20))
def test_any_batch_is_planned_or_refused_event_by_event(
    batch: list[bridge_pb2.OutboxEvent],
) -> None:
    plan = Plan.of(batch, "htl_1")
    planned = len(plan.telemetry) + len(plan.events) + len(plan.gaps) + len(plan.rejected)
    assert planned <= len(batch)
    for row in plan.telemetry.rows():
        assert math.isfinite(row["value"])
        assert not any(ord(c) < 32 or ord(c) == 127 for c in row["device_id"])
    for values in plan.alerts.values():
        assert len(values["message"]) <= 500
    for lane in (BULK, PRIORITY):
        seqs = [e.seq for e in batch if e.lane == lane]
        assert plan.last_seq.get(lane) == (max(seqs) if seqs else None)
