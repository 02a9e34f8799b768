"""What people may set on each kind of device: its desired state's keys, types and ranges.

The per-kind table of docs/device-protocol.md, as data: a thermostat's
`setpoint` and `mode`, a light's `on` and `brightness`, a lock's `locked`.
Sensors have nothing to set. The gateway checks desired state against it
before storing it, so what it asks a device for is something the device can
do; the simulator's models answer the same commands within the same ranges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bellhop_devices.messages import DeviceKind

__all__ = ["SETTABLE", "THERMOSTAT_MODES", "Setting", "check_desired"]

THERMOSTAT_MODES: Final = ("off", "heat", "cool", "auto")


@dataclass(frozen=True, slots=True)
class Setting:
    """One settable value: a boolean, a number in [low, high], or one of `choices`."""

    kind: type
    low: float | None = None
    high: float | None = None
    integer: bool = False
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        """Why `value` cannot be set, or None."""
        if self.kind is bool:
            return None if type(value) is bool else "must be true or false"
        if self.kind is str:
            if type(value) is str and value in self.choices:
                return None
            return "must be one of " + ", ".join(self.choices)
        number = type(value) is int or (type(value) is float and not self.integer)
        if not number or (type(value) is float and not math.isfinite(value)):
            return f"must be {'an integer' if self.integer else 'a number'}"
        assert self.low is not None
        assert self.high is not None
        if not self.low <= value <= self.high:
            return f"must be in {self.low:g}..{self.high:g}"
        return None


SETTABLE: Final[Mapping[DeviceKind, Mapping[str, Setting]]] = {
    DeviceKind.THERMOSTAT: {
        "setpoint": Setting(float, 5, 35),
        "mode": Setting(str, choices=THERMOSTAT_MODES),
    },
    DeviceKind.LIGHT: {
        "on": Setting(bool),
        "brightness": Setting(float, 0, 100, integer=True),
    },
    DeviceKind.DOOR_LOCK: {"locked": Setting(bool)},
    DeviceKind.DOOR_SENSOR: {},
    DeviceKind.ENVIRONMENT_SENSOR: {},
    DeviceKind.GAS_SENSOR: {},
}


def check_desired(kind: DeviceKind, values: Mapping[str, Any]) -> list[str]:
    """Every problem with setting `values` on a device of `kind`, each naming its key."""
    settable = SETTABLE[kind]
    problems = []
    for key, value in values.items():
        setting = settable.get(key)
        if setting is None:
            allowed = ", ".join(settable) or "nothing"
            problems.append(f"{key}: a {kind.value} has no such setting (settable: {allowed})")
            continue
        problem = setting.problem(value)
        if problem is not None:
            problems.append(f"{key}: {problem}")
    return problems
