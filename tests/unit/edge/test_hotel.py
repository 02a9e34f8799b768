"""The in-memory hotel core: registry, state, liveness, unknown devices."""

from __future__ import annotations

import pytest
from bellhop_bridge.desired import RemoteIntent
from bellhop_devices.messages import (
    Ack,
    AckStatus,
    DeviceKind,
    Event,
    EventKind,
    StateReport,
    Status,
    Telemetry,
)
from bellhop_edge.core.hotel import (
    AckReceived,
    ConnectivityChanged,
    DeviceUpdated,
    EventAccepted,
    Hotel,
    Rejected,
    StateChanged,
    TelemetryAccepted,
)
from bellhop_edge.core.model import Connectivity, DesiredState, Room
from bellhop_edge.errors import Conflict, InvalidRequest, NotFound, WriterFullError

NOW = 1_700_000_000_000


@pytest.fixture
def hotel() -> Hotel:
    h = Hotel("h1", heartbeat_timeout_ms=60_000, rooms=[Room("101", "Room 101", 1)])
    h.register_device("r101-thermostat", "101", DeviceKind.THERMOSTAT)
    return h


def test_birth_message_brings_device_online(hotel: Hotel) -> None:
    changes = hotel.apply(Status("r101-thermostat", True, NOW, DeviceKind.THERMOSTAT, "1.2.0"), NOW)
    assert any(isinstance(c, DeviceUpdated) and c.device.firmware == "1.2.0" for c in changes)
    assert any(
        isinstance(c, ConnectivityChanged) and c.device.connectivity is Connectivity.ONLINE
        for c in changes
    )
    assert hotel.device("r101-thermostat").connectivity is Connectivity.ONLINE
    assert hotel.online == 1


def test_will_takes_device_offline(hotel: Hotel) -> None:
    hotel.apply(Status("r101-thermostat", True), NOW)
    changes = hotel.apply(Status("r101-thermostat", False), NOW + 1)
    assert [c.device.connectivity for c in changes if isinstance(c, ConnectivityChanged)] == [
        Connectivity.OFFLINE
    ]


def test_telemetry_becomes_points_and_latest_values(hotel: Hotel) -> None:
    changes = hotel.apply(
        Telemetry("r101-thermostat", NOW, 1, {"temperature": 21.5, "setpoint": 22.0}), NOW
    )
    points = next(c for c in changes if isinstance(c, TelemetryAccepted)).points
    assert {(p.metric, p.value) for p in points} == {("temperature", 21.5), ("setpoint", 22.0)}
    assert hotel.latest[("r101-thermostat", "temperature")].value == 21.5
    assert hotel.device("r101-thermostat").last_seen == NOW


def test_state_reports_get_growing_versions_and_delta(hotel: Hotel) -> None:
    hotel.apply(StateReport("r101-thermostat", NOW, {"setpoint": 21.0, "mode": "heat"}), NOW)
    changes = hotel.apply(
        StateReport("r101-thermostat", NOW + 1, {"setpoint": 22.0, "mode": "heat"}), NOW + 1
    )
    state = next(c for c in changes if isinstance(c, StateChanged)).state
    assert state.version == 2
    desired = hotel.set_desired("r101-thermostat", {"setpoint": 23.0}, by="alice", now=NOW + 2)
    assert desired.version == 1
    assert hotel.delta("r101-thermostat") == {"setpoint": 23.0}
    hotel.apply(
        StateReport("r101-thermostat", NOW + 3, {"setpoint": 23.0, "mode": "heat"}), NOW + 3
    )
    assert hotel.delta("r101-thermostat") == {}


def test_desired_state_version_check(hotel: Hotel) -> None:
    hotel.set_desired("r101-thermostat", {"setpoint": 20}, by="a", now=NOW)
    with pytest.raises(Conflict, match="version 1"):
        hotel.set_desired("r101-thermostat", {"setpoint": 21}, by="b", now=NOW, expected_version=5)
    assert hotel.set_desired(
        "r101-thermostat", {"mode": "cool"}, by="b", now=NOW, expected_version=1
    ).values == {
        "setpoint": 20,
        "mode": "cool",
    }


def test_a_desired_state_the_store_refuses_takes_no_effect_and_comes_again(hotel: Hotel) -> None:
    kept: list[int] = []

    def full(state: DesiredState) -> None:
        raise WriterFullError("the store's writer is full")

    hotel.keep_desired = full
    with pytest.raises(WriterFullError):
        hotel.set_desired("r101-thermostat", {"setpoint": 20}, by="desk", now=NOW)
    remote = RemoteIntent({"setpoint": 22.0}, NOW + 10, "cloud:ops", None)
    with pytest.raises(WriterFullError):
        hotel.merge_desired("r101-thermostat", remote, change_id="desired:1", now=NOW + 11)
    assert "r101-thermostat" not in hotel.desired  # as it was: nothing unsaved in effect
    # The relay sends it again: merged now, not taken for a change merged already.
    hotel.keep_desired = lambda state: kept.append(state.version)
    merged = hotel.merge_desired("r101-thermostat", remote, change_id="desired:1", now=NOW + 20)
    assert (merged.values, kept) == ({"setpoint": 22.0}, [1])


def test_a_cloud_change_sent_again_after_a_later_one_is_not_merged_over_it(hotel: Hotel) -> None:
    first = RemoteIntent({"setpoint": 22.0}, NOW + 10, "cloud:ops", None)
    later = RemoteIntent({"setpoint": 19.0}, NOW + 20, "cloud:ops", None)
    hotel.merge_desired("r101-thermostat", first, change_id="desired:A", now=NOW + 11)
    merged = hotel.merge_desired("r101-thermostat", later, change_id="desired:B", now=NOW + 21)
    # A reconnect with neither answered: the relay sends both again, oldest first.
    again = hotel.merge_desired("r101-thermostat", first, change_id="desired:A", now=NOW + 30)
    assert again is merged
    assert (again.version, again.values["setpoint"]) == (2, 19.0)


def test_a_cloud_change_meets_a_safety_override_and_is_merged_once(hotel: Hotel) -> None:
    hotel.set_desired("r101-thermostat", {"mode": "off"}, by="maint", now=NOW, safety=True)
    remote = RemoteIntent({"mode": "heat", "setpoint": 22.0}, NOW + 10, "cloud:ops", None)
    merged = hotel.merge_desired("r101-thermostat", remote, change_id="desired:1", now=NOW + 11)
    assert merged.values == {"mode": "off", "setpoint": 22.0}
    assert {o.field: o.reason.value for o in merged.outcomes} == {
        "mode": "safety_override",
        "setpoint": "no_local_intent",
    }
    # The relay sends it again after a reconnect: the same state, not a new version.
    again = hotel.merge_desired("r101-thermostat", remote, change_id="desired:1", now=NOW + 20)
    assert again is merged
    # A change on site clears the last cloud change's outcome, and keeps who set what.
    local = hotel.set_desired("r101-thermostat", {"setpoint": 20.0}, by="desk", now=NOW + 30)
    assert (local.change_id, local.outcomes) == ("", ())
    assert local.fields["mode"].safety
    assert local.fields["setpoint"].by == "desk"


def test_a_cloud_change_is_checked_as_a_local_one(hotel: Hotel) -> None:
    remote = RemoteIntent({"setpoint": 99.0}, NOW, "cloud:ops", None)
    with pytest.raises(InvalidRequest, match="setpoint"):
        hotel.merge_desired("r101-thermostat", remote, change_id="desired:2", now=NOW)
    assert "r101-thermostat" not in hotel.desired


def test_unknown_device_is_listed_not_accepted(hotel: Hotel) -> None:
    changes = hotel.apply(Telemetry("intruder", NOW, 1, {"temperature": 99.0}), NOW)
    assert any(isinstance(c, Rejected) and c.reason == "unknown_device" for c in changes)
    assert not any(isinstance(c, TelemetryAccepted) for c in changes)
    assert [d.device_id for d in hotel.list_devices(include_unknown=True)] == [
        "intruder",
        "r101-thermostat",
    ]
    assert [d.device_id for d in hotel.list_devices()] == ["r101-thermostat"]
    assert hotel.rejected["unknown_device"] == 1
    with pytest.raises(NotFound, match="not registered"):
        hotel.registered("intruder")


def test_silent_device_goes_offline_after_heartbeat_timeout(hotel: Hotel) -> None:
    hotel.apply(Telemetry("r101-thermostat", NOW, 1, {"temperature": 21.0}), NOW)
    assert hotel.check_liveness(NOW + 59_000) == []
    changes = hotel.check_liveness(NOW + 61_000)
    assert [c.device.connectivity for c in changes] == [Connectivity.OFFLINE]
    assert hotel.check_liveness(NOW + 62_000) == []  # reported once


def test_events_and_acks_pass_through(hotel: Hotel) -> None:
    changes = hotel.apply(Event("r101-thermostat", NOW, EventKind.BUTTON, {"press": "long"}), NOW)
    assert any(isinstance(c, EventAccepted) and c.event.data == {"press": "long"} for c in changes)
    changes = hotel.apply(Ack("r101-thermostat", "c1", AckStatus.OK), NOW)
    assert any(isinstance(c, AckReceived) for c in changes)


def test_register_needs_a_known_room(hotel: Hotel) -> None:
    with pytest.raises(NotFound, match="room"):
        hotel.register_device("x", "999", DeviceKind.LIGHT)


def test_a_device_clock_far_ahead_is_rejected_not_stored(hotel: Hotel) -> None:
    micros = NOW * 1000  # a firmware that sends microseconds
    changes = hotel.apply(Telemetry("r101-thermostat", micros, 1, {"temperature": 21.0}), NOW)
    assert [c.reason for c in changes if isinstance(c, Rejected)] == ["timestamp_in_future"]
    assert hotel.rejected["timestamp_in_future"] == 1


def test_registry_reload_keeps_live_facts_and_drops_removed(hotel: Hotel) -> None:
    from bellhop_edge.core.model import Device

    hotel.apply(Status("r101-thermostat", True, NOW, DeviceKind.THERMOSTAT, "2.0.0"), NOW)
    gone = hotel.reload_registry(
        [Room("101", "Room 101", 1), Room("102", "Room 102", 1)],
        [Device("r102-light", "102", DeviceKind.LIGHT, registered=True)],
    )
    assert gone == ["r101-thermostat"]
    assert [d.device_id for d in hotel.list_devices()] == ["r102-light"]
    hotel.reload_registry(
        [Room("101", "Room 101", 1)],
        [
            Device(
                "r102-light",
                "102",
                DeviceKind.LIGHT,
                registered=True,
                connectivity=Connectivity.UNKNOWN,
            )
        ],
    )
    assert sorted(hotel.rooms) == ["101"]
