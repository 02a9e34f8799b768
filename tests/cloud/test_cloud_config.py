"""Configuration: file, environment, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from bellhop_cloud.config import RateLimitBackend, load_config
from bellhop_cloud.errors import ConfigError


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("BELLHOP_CLOUD_"):
            monkeypatch.delenv(name)
    config = load_config()
    assert config.database_url.startswith("sqlite+aiosqlite://")
    assert config.rate_limit_backend is RateLimitBackend.MEMORY
    assert config.access_token_ttl_s <= 900
    assert config.password_memory_kib >= 64 * 1024


def test_environment_beats_file_and_flags_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('database_url = "postgresql://u@db/bellhop"\nport = 9000\nissuer = "file"\n')
    monkeypatch.setenv("BELLHOP_CLOUD_PORT", "9100")
    monkeypatch.setenv("BELLHOP_CLOUD_ISSUER", "env")
    config = load_config(path, issuer="flag")
    assert config.database_url == "postgresql+asyncpg://u@db/bellhop"
    assert config.port == 9100
    assert config.issuer == "flag"


def test_every_problem_is_listed(tmp_path: Path) -> None:
    path = tmp_path / "relay.toml"
    path.write_text('access_token_ttl_s = 86400\ndatabase_url = "mysql://x"\nbogus = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = caught.value.detail
    assert "access_token_ttl_s" in message
    assert "database_url" in message
    assert "bogus" in message


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("port = = 1")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(broken)
