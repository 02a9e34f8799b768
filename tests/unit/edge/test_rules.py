"""Alert rules: readings, events and liveness in, raise/clear actions out."""

from __future__ import annotations

import pytest
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
from bellhop_edge.core.rules import Action, ClearAlert, RaiseAlert, RuleEngine

NOW = 1_800_000_000_000
TEMP = AlertKind.TEMPERATURE_OUT_OF_RANGE


@pytest.fixture
def dev(test_name: str) -> str:
    return f"{test_name}-dev"


def kinds(actions: list[Action]) -> list[tuple[str, AlertKind]]:
    return [(type(a).__name__, a.kind) for a in actions]


def feed(engine: RuleEngine, device: str, metric: str, *values: float) -> list[list[Action]]:
    return [engine.on_telemetry(TelemetryPoint(device, metric, NOW, v), NOW) for v in values]


def test_temperature_raises_once_and_clears_only_past_the_hysteresis(dev: str) -> None:
    engine = RuleEngine(RulesConfig(temperature_max_c=28.0, temperature_hysteresis_c=0.5))
    steps = feed(engine, dev, "temperature", 27.9, 28.3, 29.0, 27.8, 28.1, 27.5, 27.0)
    assert [kinds(s) for s in steps] == [
        [],
        [("RaiseAlert", TEMP)],
        [],  # still hot: no duplicate
        [],  # 27.8 is inside the range but not past the hysteresis
        [],  # back up to 28.1: no flap
        [("ClearAlert", TEMP)],  # 27.5 = max - hysteresis
        [],
    ]
    raised = steps[1][0]
    assert isinstance(raised, RaiseAlert)
    assert raised.severity is AlertSeverity.WARNING
    assert "28.3" in raised.message


def test_cold_rooms_alert_too(dev: str) -> None:
    engine = RuleEngine(RulesConfig(temperature_min_c=16.0, temperature_hysteresis_c=1.0))
    steps = feed(engine, dev, "temperature", 15.9, 16.5, 17.0)
    assert [kinds(s) for s in steps] == [[("RaiseAlert", TEMP)], [], [("ClearAlert", TEMP)]]


def test_other_metrics_are_ignored(dev: str) -> None:
    engine = RuleEngine(RulesConfig())
    assert feed(engine, dev, "setpoint", 99.0) == [[]]
    assert feed(engine, dev, "humidity", 100.0) == [[]]


def test_gas_from_readings_and_from_device_events(dev: str) -> None:
    engine = RuleEngine(RulesConfig(gas_ppm_max=400.0, gas_hysteresis_ppm=50.0))
    raised, held, cleared = feed(engine, dev, "gas_ppm", 450.0, 380.0, 350.0)
    assert kinds(raised) == [("RaiseAlert", AlertKind.GAS)]
    assert isinstance(raised[0], RaiseAlert)
    assert raised[0].severity is AlertSeverity.CRITICAL
    assert held == []
    assert kinds(cleared) == [("ClearAlert", AlertKind.GAS)]

    alarm = DeviceEvent(dev, EventKind.GAS, NOW, {"gas_ppm": 1200, "level": "warning"})
    assert kinds(engine.on_event(alarm, NOW)) == [("RaiseAlert", AlertKind.GAS)]
    clear = DeviceEvent(dev, EventKind.GAS, NOW, {"gas_ppm": 90, "level": "clear"})
    assert kinds(engine.on_event(clear, NOW)) == [("ClearAlert", AlertKind.GAS)]


def test_door_left_open_fires_after_the_limit_and_clears_on_close(dev: str) -> None:
    engine = RuleEngine(RulesConfig(door_open_max_s=300))
    opened = DeviceEvent(dev, EventKind.DOOR, NOW, {"open": True})
    assert engine.on_event(opened, NOW) == []
    assert engine.tick(NOW + 299_999) == []
    # A repeated "open" report does not restart the clock.
    assert engine.on_event(opened, NOW + 200_000) == []
    fired = engine.tick(NOW + 300_000)
    assert kinds(fired) == [("RaiseAlert", AlertKind.DOOR_LEFT_OPEN)]
    assert engine.tick(NOW + 400_000) == []
    closed = DeviceEvent(dev, EventKind.DOOR, NOW, {"open": False})
    assert kinds(engine.on_event(closed, NOW + 500_000)) == [
        ("ClearAlert", AlertKind.DOOR_LEFT_OPEN)
    ]
    assert engine.tick(NOW + 10**9) == []


def test_door_closed_in_time_never_alerts(dev: str) -> None:
    engine = RuleEngine(RulesConfig(door_open_max_s=60))
    engine.on_event(DeviceEvent(dev, EventKind.DOOR, NOW, {"open": True}), NOW)
    assert engine.on_event(DeviceEvent(dev, EventKind.DOOR, NOW, {"open": False}), NOW) == []
    assert engine.tick(NOW + 120_000) == []


def test_retained_door_state_starts_the_timer(dev: str) -> None:
    engine = RuleEngine(RulesConfig(door_open_max_s=60))
    assert engine.on_state(ReportedState(dev, 1, {"open": True}, NOW), NOW) == []
    assert kinds(engine.tick(NOW + 60_000)) == [("RaiseAlert", AlertKind.DOOR_LEFT_OPEN)]
    assert engine.on_state(ReportedState(dev, 2, {"locked": True}, NOW), NOW) == []


def test_breach_is_critical_and_clears_when_the_door_closes(dev: str) -> None:
    engine = RuleEngine(RulesConfig())
    breach = DeviceEvent(dev, EventKind.BREACH, NOW, {"reason": "forced"})
    actions = engine.on_event(breach, NOW)
    assert len(actions) == 1
    raised = actions[0]
    assert isinstance(raised, RaiseAlert)
    assert (raised.kind, raised.severity) == (AlertKind.BREACH, AlertSeverity.CRITICAL)
    assert "forced" in raised.message
    assert engine.on_event(breach, NOW) == []
    closed = DeviceEvent(dev, EventKind.DOOR, NOW, {"open": False})
    assert kinds(engine.on_event(closed, NOW)) == [("ClearAlert", AlertKind.BREACH)]


def test_battery_low_from_metric_or_event_clears_after_a_real_recharge(dev: str) -> None:
    engine = RuleEngine(RulesConfig(battery_low_pct=15.0, battery_hysteresis_pct=5.0))
    low = DeviceEvent(dev, EventKind.BATTERY, NOW, {"battery": 10, "low": True})
    assert kinds(engine.on_event(low, NOW)) == [("RaiseAlert", AlertKind.BATTERY_LOW)]
    wobble, replaced = feed(engine, dev, "battery", 16.0, 95.0)
    assert wobble == []
    assert kinds(replaced) == [("ClearAlert", AlertKind.BATTERY_LOW)]


def test_offline_and_back_online(dev: str) -> None:
    engine = RuleEngine(RulesConfig())
    assert engine.on_connectivity(dev, Connectivity.UNKNOWN, NOW) == []
    assert kinds(engine.on_connectivity(dev, Connectivity.OFFLINE, NOW)) == [
        ("RaiseAlert", AlertKind.DEVICE_OFFLINE)
    ]
    assert engine.on_connectivity(dev, Connectivity.OFFLINE, NOW) == []
    back = engine.on_connectivity(dev, Connectivity.ONLINE, NOW)
    assert back == [ClearAlert(AlertKind.DEVICE_OFFLINE, dev, "device back online")]


def test_conditions_open_at_start_up_can_clear(dev: str) -> None:
    engine = RuleEngine(RulesConfig(), raised={(TEMP, dev)})
    assert engine.is_raised(TEMP, dev)
    assert feed(engine, dev, "temperature", 35.0) == [[]]  # already open: no duplicate
    assert kinds(feed(engine, dev, "temperature", 21.0)[0]) == [("ClearAlert", TEMP)]


def test_malformed_event_data_is_ignored(dev: str) -> None:
    engine = RuleEngine(RulesConfig())
    assert engine.on_event(DeviceEvent(dev, EventKind.DOOR, NOW, {"open": "yes"}), NOW) == []
    assert engine.on_event(DeviceEvent(dev, EventKind.BATTERY, NOW, {"battery": True}), NOW) == []
    assert engine.on_event(DeviceEvent(dev, EventKind.GAS, NOW, {}), NOW) == []
    assert engine.on_event(DeviceEvent(dev, EventKind.BUTTON, NOW), NOW) == []


def test_forget_drops_a_removed_devices_timers_and_conditions(dev: str) -> None:
    engine = RuleEngine(RulesConfig(door_open_max_s=1))
    engine.on_event(DeviceEvent(dev, EventKind.DOOR, NOW, {"open": True}), NOW)
    engine.on_connectivity(dev, Connectivity.OFFLINE, NOW)
    engine.forget(dev)
    assert engine.tick(NOW + 10_000) == []
    assert not engine.is_raised(AlertKind.DEVICE_OFFLINE, dev)


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature_hysteresis_c": -1.0},
        {"temperature_min_c": 20.0, "temperature_max_c": 21.0, "temperature_hysteresis_c": 0.5},
        {"door_open_max_s": 0},
        {"gas_ppm_max": 0},
    ],
)
def test_nonsense_config_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RulesConfig(**bad)
