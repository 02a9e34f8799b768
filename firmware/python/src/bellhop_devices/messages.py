"""Typed messages of device protocol v1 (see docs/device-protocol.md).

Plain frozen dataclasses: the codec turns MQTT topics and JSON payloads into
these and back; nothing here does I/O. Times are Unix milliseconds (int),
as the devices send them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

PROTOCOL_VERSION = 1

JsonValue = Any
"""A value that came out of (or goes into) `json`; narrowed by the codec."""


class DeviceKind(StrEnum):
    THERMOSTAT = "thermostat"
    LIGHT = "light"
    DOOR_LOCK = "door_lock"
    DOOR_SENSOR = "door_sensor"
    ENVIRONMENT_SENSOR = "environment_sensor"
    GAS_SENSOR = "gas_sensor"


class Channel(StrEnum):
    """The last topic level: `hotel/{hotel_id}/device/{device_id}/{channel}`."""

    TELEMETRY = "telemetry"
    STATE = "state"
    EVENT = "event"
    CMD = "cmd"
    ACK = "ack"
    STATUS = "status"


class EventKind(StrEnum):
    DOOR = "door"
    BREACH = "breach"
    GAS = "gas"
    BUTTON = "button"
    BATTERY = "battery"


class AckStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    # The device refused a command whose expires_at had passed.
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Topic:
    hotel_id: str
    device_id: str
    channel: Channel


@dataclass(frozen=True, slots=True)
class Telemetry:
    device_id: str
    ts: int
    seq: int
    metrics: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class StateReport:
    device_id: str
    ts: int
    values: Mapping[str, JsonValue]


@dataclass(frozen=True, slots=True)
class Event:
    device_id: str
    ts: int
    kind: EventKind
    data: Mapping[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Status:
    """Birth message (online) or Last Will / clean goodbye (offline)."""

    device_id: str
    online: bool
    ts: int | None = None
    kind: DeviceKind | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """Edge -> device on `cmd`. `id` is the idempotency key."""

    id: str
    name: str
    params: Mapping[str, JsonValue]
    expires_at: int


@dataclass(frozen=True, slots=True)
class Ack:
    device_id: str
    id: str
    status: AckStatus
    result: Mapping[str, JsonValue] | None = None
    error: str | None = None


DeviceMessage = Telemetry | StateReport | Event | Status | Ack
"""What a device may publish (and the edge parse)."""
