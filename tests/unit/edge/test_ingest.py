"""Ingest: a topic, a payload and a time in; write ops, live events and acks out."""

from __future__ import annotations

import json

import pytest
from bellhop_devices.messages import DeviceKind
from bellhop_edge.config import RulesConfig
from bellhop_edge.core.alerts import AlertBook
from bellhop_edge.core.hotel import Hotel
from bellhop_edge.core.ingest import Effects, Ingest
from bellhop_edge.core.model import (
    AlertKind,
    AlertState,
    Connectivity,
    ConnectivityChange,
    Device,
    Room,
    TelemetryPoint,
)
from bellhop_edge.core.ops import (
    PutAlert,
    PutDeviceStatus,
    PutEvent,
    PutMessage,
    PutReported,
    PutTelemetry,
    WriteOp,
)
from bellhop_edge.core.replay import ReplayMemory, replay_key
from bellhop_edge.core.rules import RuleEngine

NOW = 1_800_000_000_000
HOTEL = "h1"


def topic(device_id: str, channel: str) -> str:
    return f"hotel/{HOTEL}/device/{device_id}/{channel}"


def body(**fields: object) -> bytes:
    return json.dumps({"v": 1, **fields}).encode()


def unwrap(ops: list[WriteOp]) -> list[WriteOp]:
    """A QoS 1 message's ops travel inside one PutMessage with its receipt."""
    out: list[WriteOp] = []
    for op in ops:
        out.extend(op.ops if isinstance(op, PutMessage) else (op,))
    return out


def receive(
    ingest: Ingest, topic: str, payload: bytes, now: int, *, live: bool, qos: int = 1
) -> Effects:
    return ingest.receive(topic, payload, qos, now, live=live)


def make_ingest(replay: ReplayMemory) -> Ingest:
    hotel = Hotel(HOTEL, heartbeat_timeout_ms=60_000, rooms=[Room("101", "Room 101", 1)])
    hotel.register_device("r101-env", "101", DeviceKind.ENVIRONMENT_SENSOR)
    hotel.register_device("r101-door", "101", DeviceKind.DOOR_SENSOR)
    return Ingest(hotel, RuleEngine(RulesConfig()), AlertBook(), replay, max_payload_bytes=4096)


@pytest.fixture
def ingest() -> Ingest:
    return make_ingest(ReplayMemory())


def test_telemetry_becomes_one_write_and_a_live_event_per_point(ingest: Ingest) -> None:
    payload = body(ts=NOW, seq=1, metrics={"temperature": 21.5, "humidity": 40})
    fx = receive(ingest, topic("r101-env", "telemetry"), payload, NOW, live=True)
    # The first message also brings the device online.
    assert [type(op) for op in unwrap(fx.ops)] == [PutDeviceStatus, PutTelemetry]
    (telemetry,) = [op for op in unwrap(fx.ops) if isinstance(op, PutTelemetry)]
    assert sorted(p.metric for p in telemetry.points) == ["humidity", "temperature"]
    points = [e for e in fx.live if isinstance(e.item, TelemetryPoint)]
    assert {e.room_id for e in points} == {"101"}
    assert len(points) == 2
    assert [d.connectivity for d in fx.connectivity] == [Connectivity.ONLINE]
    assert any(isinstance(e.item, ConnectivityChange) for e in fx.live)


def test_without_watchers_no_live_events_are_built(ingest: Ingest) -> None:
    payload = body(ts=NOW, seq=1, metrics={"temperature": 21.5})
    fx = receive(ingest, topic("r101-env", "telemetry"), payload, NOW, live=False)
    assert fx.ops
    assert fx.live == []


def test_a_reading_out_of_range_raises_one_alert_and_stores_it(ingest: Ingest) -> None:
    hot = body(ts=NOW, seq=1, metrics={"temperature": 35.0})
    fx = receive(ingest, topic("r101-env", "telemetry"), hot, NOW, live=False)
    (alert,) = fx.alerts
    assert alert.kind is AlertKind.TEMPERATURE_OUT_OF_RANGE
    assert alert.room_id == "101"
    assert PutAlert(alert) in unwrap(fx.ops)
    again = body(ts=NOW + 1, seq=2, metrics={"temperature": 36.0})
    assert receive(ingest, topic("r101-env", "telemetry"), again, NOW + 1, live=False).alerts == []
    back = body(ts=NOW + 2, seq=3, metrics={"temperature": 22.0})
    fx = receive(ingest, topic("r101-env", "telemetry"), back, NOW + 2, live=False)
    assert [a.state for a in fx.alerts] == [AlertState.CLEARED]


def test_state_and_events_become_their_writes(ingest: Ingest) -> None:
    fx = receive(
        ingest, topic("r101-door", "state"), body(ts=NOW, values={"open": False}), NOW, live=True
    )
    assert any(isinstance(op, PutReported) for op in unwrap(fx.ops))
    fx = receive(
        ingest,
        topic("r101-door", "event"),
        body(ts=NOW, kind="door", data={"open": True}),
        NOW,
        live=True,
    )
    assert any(isinstance(op, PutEvent) for op in unwrap(fx.ops))


def test_a_door_left_open_raises_on_a_tick(ingest: Ingest) -> None:
    receive(
        ingest,
        topic("r101-door", "event"),
        body(ts=NOW, kind="door", data={"open": True}),
        NOW,
        live=False,
    )
    # (The door goes quiet too: it is also reported offline after a minute.)
    assert AlertKind.DOOR_LEFT_OPEN not in {a.kind for a in ingest.tick(NOW + 299_000).alerts}
    assert [a.kind for a in ingest.tick(NOW + 300_000).alerts] == [AlertKind.DOOR_LEFT_OPEN]


def test_a_silent_device_goes_offline_on_a_tick(ingest: Ingest) -> None:
    receive(
        ingest,
        topic("r101-env", "telemetry"),
        body(ts=NOW, seq=1, metrics={"humidity": 40}),
        NOW,
        live=False,
    )
    fx = ingest.tick(NOW + 61_000)
    assert [d.connectivity for d in fx.connectivity] == [Connectivity.OFFLINE]
    assert [a.kind for a in fx.alerts] == [AlertKind.DEVICE_OFFLINE]


def test_garbage_is_counted_and_its_first_reject_logged_once(ingest: Ingest) -> None:
    fx = receive(ingest, topic("r101-env", "telemetry"), b"{not json", NOW, live=True)
    assert fx.ops == []
    assert fx.message is None
    assert [(r.reason, r.device_id) for r in fx.rejects] == [("malformed_json", "r101-env")]
    fx = receive(ingest, topic("r101-env", "telemetry"), b"{not json", NOW, live=True)
    assert fx.rejects == []
    assert ingest.hotel.rejected["malformed_json"] == 2


def test_a_redelivered_message_is_not_stored_twice_until_forgotten(ingest: Ingest) -> None:
    payload = body(ts=NOW, seq=1, metrics={"humidity": 40})
    first = receive(ingest, topic("r101-env", "telemetry"), payload, NOW, live=False)
    message = first.message
    assert any(isinstance(op, PutTelemetry) for op in unwrap(first.ops))
    again = receive(ingest, topic("r101-env", "telemetry"), payload, NOW + 5, live=False)
    assert again.ops == []
    assert ingest.hotel.rejected["duplicate"] == 1
    # Its writes failed: the broker sends it again, and then it must be stored.
    assert message is not None
    ingest.forget(message)
    third = receive(ingest, topic("r101-env", "telemetry"), payload, NOW + 9, live=False)
    assert any(isinstance(op, PutTelemetry) for op in unwrap(third.ops))


def test_device_acks_go_to_the_command_driver_and_unmatched_ones_are_counted(
    ingest: Ingest,
) -> None:
    fx = receive(ingest, topic("r101-env", "ack"), body(id="c1", status="ok"), NOW, live=False)
    assert [(a.device_id, a.ack.id) for a in fx.acks] == [("r101-env", "c1")]
    fx = ingest.unmatched_ack("r101-env", "c1")
    assert [r.reason for r in fx.rejects] == ["unmatched_ack"]
    assert ingest.hotel.rejected["unmatched_ack"] == 1


def test_an_unknown_device_is_recorded_not_ingested(ingest: Ingest) -> None:
    payload = body(ts=NOW, seq=1, metrics={"humidity": 40})
    fx = receive(ingest, topic("stranger", "telemetry"), payload, NOW, live=True)
    assert [type(op) for op in fx.ops] == [PutDeviceStatus]
    assert [r.reason for r in fx.rejects] == ["unknown_device"]


def test_acknowledging_an_alert_is_stored_and_published(ingest: Ingest) -> None:
    hot = body(ts=NOW, seq=1, metrics={"temperature": 35.0})
    (alert,) = receive(ingest, topic("r101-env", "telemetry"), hot, NOW, live=False).alerts
    fx = ingest.acknowledge_alert(alert.alert_id, by="alice", note="on it", now=NOW + 1)
    (acked,) = fx.alerts
    assert acked.state is AlertState.ACKNOWLEDGED
    assert acked.acknowledged_by == "alice"
    assert fx.ops == [PutAlert(acked)]
    assert [e.item for e in fx.live] == [acked]


def test_a_removed_device_loses_its_timers(ingest: Ingest) -> None:
    receive(
        ingest,
        topic("r101-door", "event"),
        body(ts=NOW, kind="door", data={"open": True}),
        NOW,
        live=False,
    )
    hotel = ingest.hotel
    kept = [d for d in hotel.devices.values() if d.device_id != "r101-door"]
    assert ingest.reload_registry(hotel.rooms.values(), kept) == ["r101-door"]
    kinds = {a.kind for a in ingest.tick(NOW + 600_000).alerts}
    assert AlertKind.DOOR_LEFT_OPEN not in kinds
    assert all(isinstance(d, Device) for d in kept)


def test_a_qos1_message_commits_its_writes_and_receipt_together(ingest: Ingest) -> None:
    hot = body(ts=NOW, seq=1, metrics={"temperature": 35.0})
    fx = receive(ingest, topic("r101-env", "telemetry"), hot, NOW, live=False, qos=1)
    (message,) = fx.ops
    assert isinstance(message, PutMessage)
    # The alert its reading raised is part of it: all or nothing.
    assert [type(op) for op in message.ops] == [PutDeviceStatus, PutTelemetry, PutAlert]
    assert message.receipt == replay_key(fx.message) if fx.message else False


def test_a_qos0_message_has_no_receipt_and_cannot_be_redelivered(ingest: Ingest) -> None:
    payload = body(ts=NOW, seq=1, metrics={"humidity": 40})
    fx = receive(ingest, topic("r101-env", "telemetry"), payload, NOW, live=False, qos=0)
    assert not any(isinstance(op, PutMessage) for op in fx.ops)
    assert any(isinstance(op, PutTelemetry) for op in fx.ops)
    # A device publishing at QoS 0 never sends the same message twice: no screening.
    fx = receive(ingest, topic("r101-env", "telemetry"), payload, NOW, live=False, qos=0)
    assert any(isinstance(op, PutTelemetry) for op in fx.ops)
    assert ingest.hotel.rejected["duplicate"] == 0


def test_a_receipt_restored_after_a_restart_recognises_the_broker_s_redelivery() -> None:
    payload = body(ts=NOW, seq=7, metrics={"humidity": 40})
    before = make_ingest(ReplayMemory())
    fx = receive(before, topic("r101-env", "telemetry"), payload, NOW, live=False)
    (message,) = fx.ops
    assert isinstance(message, PutMessage)
    restored = ReplayMemory()
    restored.restore([message.receipt])  # what the store kept
    after = make_ingest(restored)
    fx = receive(after, topic("r101-env", "telemetry"), payload, NOW + 10, live=False)
    assert fx.ops == []
    assert after.hotel.rejected["duplicate"] == 1
    # The next message of that device is new.
    nxt = body(ts=NOW + 1, seq=8, metrics={"humidity": 41})
    assert receive(after, topic("r101-env", "telemetry"), nxt, NOW + 11, live=False).ops
