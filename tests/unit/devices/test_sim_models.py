"""The simulator's sans-I/O parts: device models, layout, provisioning, back-off."""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import pytest
from bellhop_devices import codec
from bellhop_devices.errors import ProvisioningError
from bellhop_devices.messages import AckStatus, Channel, Command, DeviceKind, Event, EventKind
from bellhop_devices.sim import (
    Faults,
    backoff,
    floor_of,
    garbage_payload,
    layout,
    load_provisioning,
)
from bellhop_devices.sim.models import (
    DoorLockModel,
    DoorSensorModel,
    EnvironmentSensorModel,
    GasSensorModel,
    LightModel,
    ThermostatModel,
    model_for,
)

T0 = 1_763_790_000_000


def cmd(name: str, **params: object) -> Command:
    return Command("c-1", name, params, T0 + 10_000)


def test_thermostat_heats_toward_its_setpoint_and_stops_when_off() -> None:
    model = ThermostatModel(random.Random(1), T0)
    model.temperature = 17.0
    assert model.execute(cmd("set_setpoint", setpoint=23), T0).status is AckStatus.OK
    for minute in range(60):
        model.advance(60, T0 + minute * 60_000)
    assert 22.0 < model.temperature < 24.0
    model.execute(cmd("set_mode", mode="off"), T0)
    for minute in range(120):
        model.advance(60, T0 + minute * 60_000)
    assert model.temperature < 18.5
    assert model.state() == {"setpoint": 23.0, "mode": "off"}


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("set_setpoint", {"setpoint": 40}),
        ("set_setpoint", {"setpoint": True}),
        ("set_mode", {"mode": "turbo"}),
    ],
)
def test_thermostat_refuses_bad_params_without_changing(
    name: str, params: dict[str, object]
) -> None:
    model = ThermostatModel(random.Random(1), T0)
    outcome = model.execute(Command("c-1", name, params, T0), T0)
    assert outcome.status is AckStatus.ERROR
    assert outcome.error is not None
    assert outcome.error.startswith("bad_params: ")
    assert model.state() == {"setpoint": 21.0, "mode": "heat"}


def test_light_switches_and_reports_power() -> None:
    model = LightModel(random.Random(1), T0)
    outcome = model.execute(cmd("set_light", on=True, brightness=50), T0)
    assert outcome.result == {"on": True, "brightness": 50}
    assert model.metrics() == {"brightness": 50, "power_w": 4.5}
    model.execute(cmd("set_light", on=False), T0)
    assert model.metrics()["brightness"] == 0
    assert model.execute(cmd("set_light"), T0).status is AckStatus.ERROR
    assert model.execute(cmd("set_light", brightness=12.5), T0).status is AckStatus.ERROR


def test_door_lock_relocks_after_a_timed_unlock() -> None:
    model = DoorLockModel(random.Random(1), T0)
    assert model.execute(cmd("unlock", duration_s=5), T0).result == {"locked": False}
    model.advance(1, T0 + 4_000)
    assert model.state() == {"locked": False}
    model.advance(1, T0 + 5_000)
    assert model.state() == {"locked": True}
    assert model.execute(cmd("unlock", duration_s=0), T0).status is AckStatus.ERROR


def test_door_sensor_opens_then_closes_and_flags_a_door_held_open() -> None:
    model = DoorSensorModel(random.Random(4), T0)
    kinds: list[tuple[EventKind, object]] = []
    now = T0
    for _ in range(200_000):
        now += 1_000
        kinds += [(e.kind, e.data.get("open", e.data.get("reason"))) for e in model.advance(1, now)]
        if any(k is EventKind.BREACH for k, _ in kinds):
            break
    doors = [v for k, v in kinds if k is EventKind.DOOR]
    assert doors[:4] == [True, False, True, False]
    assert all(a != b for a, b in itertools.pairwise(doors))
    assert (EventKind.BREACH, "held_open") in kinds


def test_gas_sensor_warns_alarms_and_clears() -> None:
    model = GasSensorModel(random.Random(1), T0)
    seen = []
    for ppm in (1_500, 6_000, 0):
        model.leak(ppm)
        seen += [e.data["level"] for e in model.advance(1, T0) if e.kind is EventKind.GAS]
    assert seen == ["warning", "alarm", "clear"]
    assert model.state() == {"alarm": False}


def test_battery_events_fire_once_per_threshold() -> None:
    model = EnvironmentSensorModel(random.Random(1), T0)
    model.battery = 21.0
    battery_events = []
    for hour in range(40):
        battery_events += [
            e.data["battery"]
            for e in model.advance(3600, T0 + hour * 3_600_000)
            if e.kind is EventKind.BATTERY
        ]
    assert len(battery_events) == 3
    assert model.metrics()["battery"] == 1


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_every_kind_answers_ping_and_refuses_unknown_commands(kind: DeviceKind) -> None:
    model = model_for(kind, random.Random(1), T0)
    assert model.execute(cmd("ping"), T0 + 61_000).result == {"uptime_s": 61}
    unknown = model.execute(cmd("fly"), T0)
    assert (unknown.status, unknown.error) == (AckStatus.ERROR, "unknown_command: fly")


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_every_kind_produces_messages_the_codec_accepts(kind: DeviceKind) -> None:
    rng = random.Random(2)
    model = model_for(kind, rng, T0)
    if isinstance(model, GasSensorModel):
        model.leak(7_000)
    hotel = "hotel-models"
    device = f"r101-{kind.value}"
    for step in range(1, 2_000):
        now = T0 + step * 10_000
        for event in model.advance(10, now):
            payload = codec.encode(Event(device, now, event.kind, event.data))
            codec.decode(codec.topic(hotel, device, Channel.EVENT), payload, hotel_id=hotel)
    metrics = model.metrics()
    assert metrics
    for name, value in metrics.items():
        low, high = codec.METRIC_RANGES.get(name, (-1e9, 1e9))
        assert low <= value <= high


def test_layout_is_a_realistic_hotel() -> None:
    specs = layout(45)
    ids = [s.device_id for s in specs]
    assert len(ids) == len(set(ids))
    assert ids[:6] == [
        "r101-thermostat",
        "r101-light",
        "r101-door_lock",
        "r101-door_sensor",
        "r101-environment_sensor",
        "r101-gas_sensor",
    ]
    rooms = {s.room_id for s in specs if s.room_id is not None}
    assert len(rooms) == 45
    assert {floor_of(r) for r in rooms} == {1, 2, 3}
    assert "r305-thermostat" in ids
    assert "r306-thermostat" not in ids
    assert sum(s.kind is DeviceKind.GAS_SENSOR for s in specs) == 12
    assert len(layout(380)) == 1995


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "provisioning.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_provisioning_file_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "hotel_id": "hotel-prov",
            "broker": {"host": "10.0.0.2", "port": 8883, "tls": True, "ca": "/etc/bellhop/ca.pem"},
            "devices": [
                {
                    "device_id": "r101-light",
                    "room_id": "101",
                    "kind": "light",
                    "username": "r101-light",
                    "password": "pw",
                }
            ],
        },
    )
    prov = load_provisioning(path)
    assert prov.hotel_id == "hotel-prov"
    assert (prov.broker.host, prov.broker.port, prov.broker.tls, str(prov.broker.ca)) == (
        "10.0.0.2",
        8883,
        True,
        "/etc/bellhop/ca.pem",
    )
    (spec,) = prov.devices
    assert (spec.device_id, spec.kind, spec.username, spec.password) == (
        "r101-light",
        DeviceKind.LIGHT,
        "r101-light",
        "pw",
    )


@pytest.mark.parametrize(
    "doc",
    [
        {"devices": []},
        {"broker": {"host": "h", "port": 0}, "devices": []},
        {"broker": {"host": "h", "port": 1883}, "devices": [{"device_id": "a/b", "kind": "light"}]},
        {
            "broker": {"host": "h", "port": 1883},
            "devices": [{"device_id": "d1", "kind": "toaster"}],
        },
        {
            "broker": {"host": "h", "port": 1883},
            "devices": [{"device_id": "d1", "kind": "light"}] * 2,
        },
        ["not", "an", "object"],
    ],
)
def test_bad_provisioning_file_is_a_clear_error(tmp_path: Path, doc: object) -> None:
    with pytest.raises(ProvisioningError, match=r"provisioning\.json: invalid provisioning"):
        load_provisioning(_write(tmp_path, doc))


def test_unreadable_provisioning_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ProvisioningError, match="cannot read"):
        load_provisioning(tmp_path / "broken.json")


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = list(itertools.islice(backoff(initial=1, factor=2, cap=8, jitter=0.5), 8))
    assert 0.5 <= delays[0] <= 1
    assert all(4 <= d <= 8 for d in delays[4:])
    assert len(set(delays)) > 1


def test_faults_reject_impossible_settings() -> None:
    with pytest.raises(ValueError, match="garbage_probability"):
        Faults(garbage_probability=1.5)
    with pytest.raises(ValueError, match="disconnect_every_s"):
        Faults(disconnect_every_s=0)


@pytest.mark.parametrize("seed", range(30))
def test_garbage_is_always_rejected(seed: int) -> None:
    rng = random.Random(seed)
    topic = codec.topic("hotel-garbage", "d1", Channel.TELEMETRY)
    valid = b'{"v":1,"ts":1,"seq":1,"metrics":{"temperature":21}}'
    with pytest.raises(codec.DecodeError):
        codec.decode(topic, garbage_payload(rng, valid), hotel_id="hotel-garbage")


def test_cli_registers_sim_with_its_options() -> None:
    from bellhop_devices import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(
        [
            "sim",
            "--hotel",
            "h1",
            "--rooms",
            "3",
            "--broker",
            "127.0.0.1:1884",
            "--garbage",
            "0.5",
            "--silent",
        ]
    )
    assert (args.hotel, args.rooms, args.garbage, args.silent) == ("h1", 3, 0.5, True)
    assert args.handler is cli.run
    hotel = cli._build_hotel(args)
    assert len(hotel.devices) == 16
    assert hotel.devices["r101-light"].faults == Faults(garbage_probability=0.5, silent=True)


def test_cli_refuses_a_bad_broker_address() -> None:
    from bellhop_devices import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["sim", "--hotel", "h1", "--broker", "localhost"])
    assert cli.run(args) == 2
