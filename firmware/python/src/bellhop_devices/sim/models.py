"""What each simulated device kind does, without I/O.

A model holds a device's physical state, moves it forward in time
(`advance`), reports it (`metrics`, `state`) and runs commands (`execute`).
The asyncio driver in `device.py` decides when, and does the publishing.
Behaviour follows the per-kind table of docs/device-protocol.md.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from bellhop_devices.kinds import THERMOSTAT_MODES
from bellhop_devices.messages import AckStatus, Command, DeviceKind, EventKind, JsonValue

__all__ = [
    "DeviceModel",
    "DoorLockModel",
    "DoorSensorModel",
    "EnvironmentSensorModel",
    "GasSensorModel",
    "LightModel",
    "Outcome",
    "SimEvent",
    "ThermostatModel",
    "model_for",
]

BATTERY_THRESHOLDS = (20, 10, 5)
GAS_WARNING_PPM = 1_000
GAS_ALARM_PPM = 5_000


@dataclass(frozen=True, slots=True)
class Outcome:
    """What running a command produced; becomes the ack."""

    status: AckStatus
    result: Mapping[str, JsonValue] | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SimEvent:
    kind: EventKind
    data: Mapping[str, JsonValue]


def _ok(**result: JsonValue) -> Outcome:
    return Outcome(AckStatus.OK, result)


def _bad_params(detail: str) -> Outcome:
    return Outcome(AckStatus.ERROR, error=f"bad_params: {detail}")


def _number(params: Mapping[str, JsonValue], key: str, low: float, high: float) -> float | None:
    value = params.get(key)
    if (type(value) is int or type(value) is float) and low <= value <= high:
        return float(value)
    return None


class DeviceModel:
    """Base of the per-kind models: battery, uptime and the common `ping`."""

    kind: ClassVar[DeviceKind]
    battery_powered: ClassVar[bool] = False
    # Percent per hour: fast enough that a long demo run shows it.
    battery_drain_per_hour: ClassVar[float] = 0.5

    __slots__ = ("_rng", "_started_ms", "battery")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        self._rng = rng
        self._started_ms = now_ms
        self.battery = round(rng.uniform(60, 100), 1) if self.battery_powered else 100.0

    def metrics(self) -> dict[str, float]:
        return {"battery": round(self.battery)} if self.battery_powered else {}

    def state(self) -> dict[str, JsonValue] | None:
        """The whole reported state, or None for kinds without state."""
        return None

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        """Move `dt_s` seconds forward; returns the events that happened."""
        if not self.battery_powered:
            return []
        before = self.battery
        self.battery = max(0.0, before - self.battery_drain_per_hour * dt_s / 3600)
        return [
            SimEvent(EventKind.BATTERY, {"battery": round(self.battery), "low": True})
            for threshold in BATTERY_THRESHOLDS
            if before >= threshold > self.battery
        ]

    def execute(self, cmd: Command, now_ms: int) -> Outcome:
        if cmd.name == "ping":
            return _ok(uptime_s=max(0, (now_ms - self._started_ms) // 1000))
        handler = self._commands().get(cmd.name)
        if handler is None:
            return Outcome(AckStatus.ERROR, error=f"unknown_command: {cmd.name}")
        return handler(cmd, now_ms)

    def _commands(self) -> Mapping[str, Callable[[Command, int], Outcome]]:
        return {}


class ThermostatModel(DeviceModel):
    kind = DeviceKind.THERMOSTAT
    # Room air responds to heating or cooling with a time constant of minutes.
    TAU_S = 600.0
    AMBIENT = 17.0

    __slots__ = ("mode", "setpoint", "temperature")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        super().__init__(rng, now_ms)
        self.temperature = round(rng.uniform(18.0, 24.0), 2)
        self.setpoint = 21.0
        self.mode = "heat"

    def metrics(self) -> dict[str, float]:
        return {"temperature": round(self.temperature, 2), "setpoint": self.setpoint}

    def state(self) -> dict[str, JsonValue]:
        return {"setpoint": self.setpoint, "mode": self.mode}

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        target = self.AMBIENT
        if (self.mode in ("heat", "auto") and self.setpoint > self.temperature) or (
            self.mode in ("cool", "auto") and self.setpoint < self.temperature
        ):
            target = self.setpoint
        pull = 1 - math.exp(-dt_s / self.TAU_S)
        noise = self._rng.gauss(0, 0.03)
        self.temperature = min(
            125.0, max(-40.0, self.temperature + (target - self.temperature) * pull + noise)
        )
        return super().advance(dt_s, now_ms)

    def _commands(self) -> Mapping[str, Callable[[Command, int], Outcome]]:
        return {"set_setpoint": self._set_setpoint, "set_mode": self._set_mode}

    def _set_setpoint(self, cmd: Command, now_ms: int) -> Outcome:
        value = _number(cmd.params, "setpoint", 5, 35)
        if value is None:
            return _bad_params("setpoint must be a number in 5..35")
        self.setpoint = value
        return _ok(setpoint=value)

    def _set_mode(self, cmd: Command, now_ms: int) -> Outcome:
        mode = cmd.params.get("mode")
        if mode not in THERMOSTAT_MODES:
            return _bad_params("mode must be one of " + ", ".join(THERMOSTAT_MODES))
        self.mode = str(mode)
        return _ok(mode=self.mode)


class LightModel(DeviceModel):
    kind = DeviceKind.LIGHT
    WATTS = 9.0
    STANDBY_W = 0.3
    # A guest presses the wall switch about once an hour.
    BUTTON_PER_S = 1 / 3600

    __slots__ = ("brightness", "on")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        super().__init__(rng, now_ms)
        self.on = rng.random() < 0.3
        self.brightness = 80

    def metrics(self) -> dict[str, float]:
        if not self.on:
            return {"brightness": 0, "power_w": self.STANDBY_W}
        return {
            "brightness": self.brightness,
            "power_w": round(self.WATTS * self.brightness / 100, 2),
        }

    def state(self) -> dict[str, JsonValue]:
        return {"on": self.on, "brightness": self.brightness}

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        events = super().advance(dt_s, now_ms)
        if self._rng.random() < self.BUTTON_PER_S * dt_s:
            self.on = not self.on
            events.append(SimEvent(EventKind.BUTTON, {"press": "short"}))
        return events

    def _commands(self) -> Mapping[str, Callable[[Command, int], Outcome]]:
        return {"set_light": self._set_light}

    def _set_light(self, cmd: Command, now_ms: int) -> Outcome:
        params = cmd.params
        if "on" not in params and "brightness" not in params:
            return _bad_params("give on, brightness or both")
        on = params.get("on", self.on)
        if type(on) is not bool:
            return _bad_params("on must be a boolean")
        brightness = self.brightness
        if "brightness" in params:
            value = params["brightness"]
            if type(value) is not int or not 0 <= value <= 100:
                return _bad_params("brightness must be an integer in 0..100")
            brightness = value
        self.on, self.brightness = on, brightness
        return _ok(on=on, brightness=brightness)


class DoorLockModel(DeviceModel):
    kind = DeviceKind.DOOR_LOCK
    battery_powered = True

    __slots__ = ("locked", "relock_at_ms")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        super().__init__(rng, now_ms)
        self.locked = True
        self.relock_at_ms: int | None = None

    def state(self) -> dict[str, JsonValue]:
        return {"locked": self.locked}

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        if self.relock_at_ms is not None and now_ms >= self.relock_at_ms:
            self.locked, self.relock_at_ms = True, None
        return super().advance(dt_s, now_ms)

    def _commands(self) -> Mapping[str, Callable[[Command, int], Outcome]]:
        return {"lock": self._lock, "unlock": self._unlock}

    def _lock(self, cmd: Command, now_ms: int) -> Outcome:
        self.locked, self.relock_at_ms = True, None
        return _ok(locked=True)

    def _unlock(self, cmd: Command, now_ms: int) -> Outcome:
        duration: float | None = None
        if "duration_s" in cmd.params:
            duration = _number(cmd.params, "duration_s", 1, 300)
            if duration is None:
                return _bad_params("duration_s must be a number in 1..300")
        self.locked = False
        self.relock_at_ms = None if duration is None else now_ms + int(duration * 1000)
        return _ok(locked=False)


class DoorSensorModel(DeviceModel):
    kind = DeviceKind.DOOR_SENSOR
    battery_powered = True
    # Someone opens the door about every ten minutes; it stays open a few
    # seconds, and one time in a hundred it is left open long enough to alarm.
    OPEN_PER_S = 1 / 600
    HELD_OPEN_ALARM_S = 120

    __slots__ = ("_breach_sent", "_close_at_ms", "_opened_at_ms", "open")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        super().__init__(rng, now_ms)
        self.open = False
        self._opened_at_ms = 0
        self._close_at_ms = 0
        self._breach_sent = False

    def state(self) -> dict[str, JsonValue]:
        return {"open": self.open}

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        events = super().advance(dt_s, now_ms)
        rng = self._rng
        if not self.open:
            if rng.random() < self.OPEN_PER_S * dt_s:
                held = 200.0 if rng.random() < 0.01 else rng.uniform(3, 30)
                self.open, self._opened_at_ms = True, now_ms
                self._close_at_ms, self._breach_sent = now_ms + int(held * 1000), False
                events.append(SimEvent(EventKind.DOOR, {"open": True}))
            return events
        if not self._breach_sent and now_ms - self._opened_at_ms >= self.HELD_OPEN_ALARM_S * 1000:
            self._breach_sent = True
            events.append(SimEvent(EventKind.BREACH, {"reason": "held_open"}))
        if now_ms >= self._close_at_ms:
            self.open = False
            events.append(SimEvent(EventKind.DOOR, {"open": False}))
        return events


class EnvironmentSensorModel(DeviceModel):
    kind = DeviceKind.ENVIRONMENT_SENSOR
    battery_powered = True

    __slots__ = ("humidity", "luminosity", "temperature")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        super().__init__(rng, now_ms)
        self.temperature = rng.uniform(19.0, 23.0)
        self.humidity = rng.uniform(35.0, 55.0)
        self.luminosity = self._daylight(now_ms)

    def metrics(self) -> dict[str, float]:
        return {
            "temperature": round(self.temperature, 2),
            "humidity": round(self.humidity, 1),
            "luminosity": round(self.luminosity),
            **super().metrics(),
        }

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        rng = self._rng
        # Slow random walks held inside comfortable indoor bounds.
        self.temperature = min(28.0, max(16.0, self.temperature + rng.gauss(0, 0.02)))
        self.humidity = min(70.0, max(25.0, self.humidity + rng.gauss(0, 0.1)))
        self.luminosity = self._daylight(now_ms)
        return super().advance(dt_s, now_ms)

    def _daylight(self, now_ms: int) -> float:
        hour = now_ms / 3_600_000 % 24
        sun = max(0.0, math.sin(math.pi * (hour - 6) / 12))
        return max(0.0, 5 + 400 * sun + self._rng.gauss(0, 3))


class GasSensorModel(DeviceModel):
    kind = DeviceKind.GAS_SENSOR
    battery_powered = True

    __slots__ = ("_leak_ppm", "_level", "gas_ppm")

    def __init__(self, rng: random.Random, now_ms: int) -> None:
        super().__init__(rng, now_ms)
        self.gas_ppm = rng.uniform(5, 20)
        self._leak_ppm = 0.0
        self._level = "clear"

    def metrics(self) -> dict[str, float]:
        return {"gas_ppm": round(self.gas_ppm), **super().metrics()}

    def state(self) -> dict[str, JsonValue]:
        return {"alarm": self._level == "alarm"}

    def leak(self, ppm: float) -> None:
        """Scenario hook: from the next step the air holds `ppm` of gas (0 ends it)."""
        self._leak_ppm = ppm

    def advance(self, dt_s: float, now_ms: int) -> list[SimEvent]:
        events = super().advance(dt_s, now_ms)
        baseline = min(60.0, max(2.0, self.gas_ppm + self._rng.gauss(0, 0.5)))
        self.gas_ppm = max(baseline, self._leak_ppm) if self._leak_ppm else baseline
        level = "clear"
        if self.gas_ppm >= GAS_ALARM_PPM:
            level = "alarm"
        elif self.gas_ppm >= GAS_WARNING_PPM:
            level = "warning"
        if level != self._level:
            self._level = level
            events.append(SimEvent(EventKind.GAS, {"gas_ppm": round(self.gas_ppm), "level": level}))
        return events


MODELS: Mapping[DeviceKind, type[DeviceModel]] = {
    m.kind: m
    for m in (
        ThermostatModel,
        LightModel,
        DoorLockModel,
        DoorSensorModel,
        EnvironmentSensorModel,
        GasSensorModel,
    )
}


def model_for(kind: DeviceKind, rng: random.Random, now_ms: int) -> DeviceModel:
    return MODELS[kind](rng, now_ms)
