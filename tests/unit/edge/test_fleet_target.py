"""Fleet targets: within one list a union, across the lists an intersection (as the relay)."""

from __future__ import annotations

import pytest
from bellhop_devices.messages import DeviceKind
from bellhop_edge.api.servicer import fleet_devices
from bellhop_edge.core.hotel import Hotel
from bellhop_edge.core.model import Device, Room
from bellhop_edge.errors import NotFound

T, L, D = DeviceKind.THERMOSTAT, DeviceKind.LIGHT, DeviceKind.DOOR_SENSOR
ROOMS = [Room("101", "101", 1), Room("102", "102", 1), Room("301", "301", 3)]
DEVICES = [
    Device("t101", "101", T, registered=True),
    Device("l101", "101", L, registered=True),
    Device("t102", "102", T, registered=True),
    Device("t301", "301", T, registered=True),
    Device("d301", "301", D, registered=True),
    Device("seen", "301", T, registered=False),  # heard on the broker, never registered
]
EVERY = ["d301", "l101", "t101", "t102", "t301"]


def hotel() -> Hotel:
    return Hotel("h", heartbeat_timeout_ms=1000, rooms=ROOMS, devices=DEVICES)


CASES: list[tuple[str, dict[str, object], list[str]]] = [
    ("nothing named", {}, []),
    ("all devices", {"all_devices": True}, EVERY),
    ("one kind", {"kinds": [T]}, ["t101", "t102", "t301"]),
    ("two kinds: either", {"kinds": [L, D]}, ["d301", "l101"]),
    ("two rooms: either", {"room_ids": ["101", "102"]}, ["l101", "t101", "t102"]),
    ("thermostats on floor 3", {"kinds": [T], "floors": [3]}, ["t301"]),
    ("kinds and rooms", {"kinds": [T, L], "room_ids": ["101"]}, ["l101", "t101"]),
    ("kinds, floors and ids", {"kinds": [T], "floors": [1], "device_ids": ["t102"]}, ["t102"]),
    ("lists that exclude each other", {"kinds": [D], "floors": [1]}, []),
    ("all devices adds nothing to a list", {"floors": [3], "all_devices": True}, ["d301", "t301"]),
    ("unregistered devices are never chosen", {"room_ids": ["301"]}, ["d301", "t301"]),
]


@pytest.mark.parametrize(("case", "target", "chosen"), CASES, ids=[c[0] for c in CASES])
def test_fleet_target(case: str, target: dict[str, object], chosen: list[str]) -> None:
    lists = {"room_ids": [], "floors": [], "kinds": [], "device_ids": [], "all_devices": False}
    assert fleet_devices(hotel(), **{**lists, **target}) == chosen  # type: ignore[arg-type]


def test_an_unknown_device_id_is_not_found() -> None:
    with pytest.raises(NotFound, match="ghost"):
        fleet_devices(
            hotel(), room_ids=["101"], floors=[], kinds=[], device_ids=["ghost"], all_devices=False
        )
