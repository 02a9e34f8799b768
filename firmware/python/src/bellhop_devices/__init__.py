"""Bellhop device protocol v1 and the device simulator.

Exported here: the protocol's message types and its errors. The codec is
`bellhop_devices.codec`; the simulator, `bellhop_devices.sim`, is left out
so that importing this package (as `bellhop --help` does) stays light.
"""

from bellhop_devices.errors import DecodeError, DevicesError, ProvisioningError, RejectReason
from bellhop_devices.messages import (
    PROTOCOL_VERSION,
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceKind,
    DeviceMessage,
    Event,
    EventKind,
    StateReport,
    Status,
    Telemetry,
    Topic,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AckStatus",
    "Channel",
    "Command",
    "DecodeError",
    "DeviceKind",
    "DeviceMessage",
    "DevicesError",
    "Event",
    "EventKind",
    "ProvisioningError",
    "RejectReason",
    "StateReport",
    "Status",
    "Telemetry",
    "Topic",
]
