"""Configuration: TOML plus environment, validated with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from bellhop_edge.config import load_config
from bellhop_edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_file_values_and_defaults(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
hotel_id = "lisbon-1"
[mqtt]
port = 1884
[[rooms]]
room_id = "101"
floor = 1
[[devices]]
device_id = "r101-light"
room_id = "101"
kind = "light"
""",
        )
    )
    assert config.hotel_id == "lisbon-1"
    assert config.mqtt.port == 1884
    assert config.mqtt.host == "127.0.0.1"
    assert config.devices[0].kind.value == "light"
    assert config.database_path == Path("var/edge/edge.db")


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELLHOP_EDGE_MQTT__PORT", "2883")
    monkeypatch.setenv("BELLHOP_EDGE_HOTEL_ID", "porto")
    config = load_config(write(tmp_path, 'hotel_id = "lisbon"\n[mqtt]\nport = 1884\n'))
    assert config.mqtt.port == 2883
    assert config.hotel_id == "porto"


def test_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, 'hotel_id = "Bad Id!"\n[mqtt]\nport = 70000\ncolour = "red"\n'))
    message = str(info.value)
    assert "hotel_id" in message
    assert "mqtt.port" in message
    assert "mqtt.colour" in message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "hotel_id = \n"))


def test_password_file_keeps_secret_out_of_config(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.secret"
    secret.write_text("s3cret\n")
    config = load_config(write(tmp_path, f'hotel_id = "h"\n[mqtt]\npassword_file = "{secret}"\n'))
    assert config.mqtt.resolved_password() == "s3cret"
    assert "s3cret" not in repr(config)


def test_overrides_beat_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELLHOP_EDGE_MQTT__PORT", "2883")
    path = write(tmp_path, 'hotel_id = "lisbon"\n[mqtt]\nport = 1884\n')
    assert load_config(path, overrides={"mqtt": {"port": 3883}}).mqtt.port == 3883


@pytest.mark.parametrize(
    ("toml", "fields"),
    [
        ("[rules]\ntemperature_min_c = 30\ntemperature_max_c = 20", ["rules", "temperature_min_c"]),
        ("[rules]\ntemperature_hysteresis_c = 7", ["rules", "temperature_hysteresis_c"]),
        ("[rules]\ngas_ppm_max = 40\ngas_hysteresis_ppm = 50", ["rules", "gas_hysteresis_ppm"]),
        ("[mqtt]\nreconnect_min_s = 9\nreconnect_max_s = 1", ["mqtt", "reconnect_min_s"]),
        ('[mqtt]\npassword = "a"\npassword_file = "b"', ["mqtt", "password_file"]),
        ("[liveness]\nheartbeat_timeout_s = 1\ncheck_interval_s = 5", ["liveness"]),
        ("[commands]\ndefault_timeout_s = 90", ["commands", "max_timeout_s"]),
        ('[api]\nlisten = "50051"', ["api.listen"]),
        ('[[rooms]]\nroom_id = "101"\n[[rooms]]\nroom_id = "101"', ["rooms", "101"]),
        ('[[devices]]\ndevice_id = "a/b"\nroom_id = "1"\nkind = "light"', ["devices.0.device_id"]),
    ],
)
def test_invalid_combinations_are_refused_naming_their_fields(
    tmp_path: Path, toml: str, fields: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'hotel_id = "h"\n{toml}\n'))
    message = str(info.value)
    for field in fields:
        assert field in message, message
    assert "Traceback" not in message


def test_check_config_refuses_what_run_would_refuse(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write(tmp_path, 'hotel_id = "h"\n[rules]\ntemperature_min_c = 30\n')
    done = subprocess.run(
        [sys.executable, "-m", "bellhop_cli.main", "edge", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2
    assert "rules: temperature_min_c (30) must be below temperature_max_c (28)" in done.stderr
    assert "Traceback" not in done.stderr
