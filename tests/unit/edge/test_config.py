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
