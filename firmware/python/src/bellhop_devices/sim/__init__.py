"""Simulated Bellhop devices speaking protocol v1 over MQTT (asyncio + aiomqtt)."""

from bellhop_devices.sim.device import Broker, DeviceStats, Link, SimulatedDevice, backoff
from bellhop_devices.sim.faults import Faults, garbage_payload
from bellhop_devices.sim.hotel import (
    DeviceSpec,
    Provisioning,
    SimulatedHotel,
    floor_of,
    layout,
    load_provisioning,
    room_numbers,
)

__all__ = [
    "Broker",
    "DeviceSpec",
    "DeviceStats",
    "Faults",
    "Link",
    "Provisioning",
    "SimulatedDevice",
    "SimulatedHotel",
    "backoff",
    "floor_of",
    "garbage_payload",
    "layout",
    "load_provisioning",
    "room_numbers",
]
