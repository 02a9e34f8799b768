"""Alert rules: a sans-I/O engine fed readings, events and liveness.

    engine = RuleEngine(config.rules, raised=book.conditions())
    for action in engine.on_telemetry(point, now_ms):
        ...  # RaiseAlert / ClearAlert -> AlertBook -> store writer

The engine remembers which conditions it has raised, so it answers each
transition once, and applies hysteresis so that a reading hovering at a
threshold does not flap. Its thresholds are `config.RulesConfig`, validated
there once. It never reads a clock: every call takes `now_ms`,
and `tick(now_ms)` drives the door-left-open timers. Every rule, its default
and its hysteresis are in docs/alert-rules.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bellhop_edge.config import RulesConfig
from bellhop_edge.core.model import (
    AlertKind,
    AlertSeverity,
    Connectivity,
    DeviceEvent,
    EventKind,
    ReportedState,
    TelemetryPoint,
)

__all__ = ["Action", "ClearAlert", "RaiseAlert", "RuleEngine"]

TEMPERATURE = "temperature"
GAS_PPM = "gas_ppm"
BATTERY = "battery"

SEVERITY: Mapping[AlertKind, AlertSeverity] = {
    AlertKind.TEMPERATURE_OUT_OF_RANGE: AlertSeverity.WARNING,
    AlertKind.GAS: AlertSeverity.CRITICAL,
    AlertKind.DOOR_LEFT_OPEN: AlertSeverity.WARNING,
    AlertKind.BREACH: AlertSeverity.CRITICAL,
    AlertKind.BATTERY_LOW: AlertSeverity.WARNING,
    AlertKind.DEVICE_OFFLINE: AlertSeverity.WARNING,
}


@dataclass(frozen=True, slots=True)
class RaiseAlert:
    kind: AlertKind
    device_id: str
    severity: AlertSeverity
    message: str


@dataclass(frozen=True, slots=True)
class ClearAlert:
    kind: AlertKind
    device_id: str
    reason: str


Action = RaiseAlert | ClearAlert


class RuleEngine:
    """Evaluates every rule for every device of one hotel."""

    def __init__(
        self, config: RulesConfig, *, raised: Iterable[tuple[AlertKind, str]] = ()
    ) -> None:
        """`raised`: conditions open at start-up (from the store), so they can clear."""
        self.config = config
        self._raised: set[tuple[AlertKind, str]] = set(raised)
        self._door_opened_at: dict[str, int] = {}
        self._metric_rules: dict[str, Callable[[str, float], list[Action]]] = {
            TEMPERATURE: self._temperature,
            GAS_PPM: self._gas,
            BATTERY: self._battery,
        }

    def is_raised(self, kind: AlertKind, device_id: str) -> bool:
        return (kind, device_id) in self._raised

    # -- inputs ---------------------------------------------------------------------
    def on_telemetry(self, point: TelemetryPoint, now_ms: int) -> list[Action]:
        rule = self._metric_rules.get(point.metric)
        return [] if rule is None else rule(point.device_id, point.value)

    def on_event(self, event: DeviceEvent, now_ms: int) -> list[Action]:
        data, device_id = event.data, event.device_id
        if event.kind is EventKind.DOOR:
            is_open = data.get("open")
            # Timed on the gateway's clock, like `tick`: device clocks may drift.
            return self._door(device_id, is_open, now_ms) if isinstance(is_open, bool) else []
        if event.kind is EventKind.BREACH:
            reason = data.get("reason")
            how = f" ({reason})" if isinstance(reason, str) else ""
            return self._raise(AlertKind.BREACH, device_id, f"door breach{how}")
        if event.kind is EventKind.GAS:
            ppm = _number(data.get(GAS_PPM))
            if data.get("level") in {"warning", "alarm"}:
                shown = f"{ppm:g} ppm" if ppm is not None else "gas"
                return self._raise(
                    AlertKind.GAS, device_id, f"gas detected: {shown} ({data['level']})"
                )
            return [] if ppm is None else self._gas(device_id, ppm)
        if event.kind is EventKind.BATTERY:
            pct = _number(data.get(BATTERY))
            return [] if pct is None else self._battery(device_id, pct)
        return []

    def on_state(self, reported: ReportedState, now_ms: int) -> list[Action]:
        """A door sensor's retained state says whether it is open (also after a restart)."""
        is_open = reported.values.get("open")
        if not isinstance(is_open, bool):
            return []
        return self._door(reported.device_id, is_open, now_ms)

    def on_connectivity(
        self, device_id: str, connectivity: Connectivity, now_ms: int
    ) -> list[Action]:
        if connectivity is Connectivity.OFFLINE:
            return self._raise(AlertKind.DEVICE_OFFLINE, device_id, "device offline")
        if connectivity is Connectivity.ONLINE:
            return self._clear(AlertKind.DEVICE_OFFLINE, device_id, "device back online")
        return []

    def tick(self, now_ms: int) -> list[Action]:
        """Raise door-left-open for every door open longer than `door_open_max_s`."""
        limit_ms = self.config.door_open_max_s * 1000
        actions: list[Action] = []
        for device_id, opened_at in self._door_opened_at.items():
            if now_ms - opened_at >= limit_ms:
                minutes = (now_ms - opened_at) / 60_000
                actions += self._raise(
                    AlertKind.DOOR_LEFT_OPEN, device_id, f"door open for {minutes:.1f} min"
                )
        return actions

    def forget(self, device_id: str) -> None:
        """The device was removed: drop its timers and conditions."""
        self._door_opened_at.pop(device_id, None)
        self._raised = {key for key in self._raised if key[1] != device_id}

    # -- rules ------------------------------------------------------------------------
    def _temperature(self, device_id: str, value: float) -> list[Action]:
        c = self.config
        kind = AlertKind.TEMPERATURE_OUT_OF_RANGE
        if value > c.temperature_max_c:
            return self._raise(
                kind, device_id, f"temperature {value:g} °C above {c.temperature_max_c:g} °C"
            )
        if value < c.temperature_min_c:
            return self._raise(
                kind, device_id, f"temperature {value:g} °C below {c.temperature_min_c:g} °C"
            )
        h = c.temperature_hysteresis_c
        if c.temperature_min_c + h <= value <= c.temperature_max_c - h:
            return self._clear(kind, device_id, f"temperature back to {value:g} °C")
        return []

    def _gas(self, device_id: str, ppm: float) -> list[Action]:
        c = self.config
        if ppm > c.gas_ppm_max:
            return self._raise(
                AlertKind.GAS, device_id, f"gas {ppm:g} ppm above {c.gas_ppm_max:g} ppm"
            )
        if ppm <= c.gas_ppm_max - c.gas_hysteresis_ppm:
            return self._clear(AlertKind.GAS, device_id, f"gas down to {ppm:g} ppm")
        return []

    def _battery(self, device_id: str, pct: float) -> list[Action]:
        c = self.config
        if pct < c.battery_low_pct:
            return self._raise(
                AlertKind.BATTERY_LOW,
                device_id,
                f"battery at {pct:g} % (below {c.battery_low_pct:g} %)",
            )
        if pct >= c.battery_low_pct + c.battery_hysteresis_pct:
            return self._clear(AlertKind.BATTERY_LOW, device_id, f"battery at {pct:g} %")
        return []

    def _door(self, device_id: str, is_open: bool, at_ms: int) -> list[Action]:
        if is_open:
            # The first report of an opening starts the timer; repeats do not restart it.
            self._door_opened_at.setdefault(device_id, at_ms)
            return []
        self._door_opened_at.pop(device_id, None)
        return [
            *self._clear(AlertKind.DOOR_LEFT_OPEN, device_id, "door closed"),
            *self._clear(AlertKind.BREACH, device_id, "door closed"),
        ]

    def _raise(self, kind: AlertKind, device_id: str, message: str) -> list[Action]:
        key = (kind, device_id)
        if key in self._raised:
            return []
        self._raised.add(key)
        return [RaiseAlert(kind, device_id, SEVERITY[kind], message)]

    def _clear(self, kind: AlertKind, device_id: str, reason: str) -> list[Action]:
        key = (kind, device_id)
        if key not in self._raised:
            return []
        self._raised.discard(key)
        return [ClearAlert(kind, device_id, reason)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
