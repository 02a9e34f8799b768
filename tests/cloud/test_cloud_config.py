"""Configuration: file, environment, overrides and clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bellhop_cloud.config import RateLimitBackend, RelayConfig, load_config
from bellhop_cloud.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_relay_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's or CI's own BELLHOP_CLOUD_* must not leak into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("BELLHOP_CLOUD_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(text)
    return path


def refused(path: Path | None = None, **overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, **overrides)
    assert "Traceback" not in caught.value.detail
    return caught.value.detail


def test_defaults_are_the_embedded_setup() -> None:
    config = load_config()
    assert config == RelayConfig()
    assert config.database_url.startswith("sqlite+aiosqlite://")
    assert config.rate_limit_backend is RateLimitBackend.MEMORY
    assert config.access_token_ttl_s <= 900
    assert config.password_memory_kib >= 64 * 1024


def test_the_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'database_url = "postgresql://u@db/bellhop"\ndatabase_schema = "relay"\n'
        'rate_limit_backend = "redis"\nredis_url = "redis://cache:6379/1"\n'
        'signing_key_path = "/etc/bellhop/key.pem"\nport = 9000\n',
    )
    config = load_config(path)
    assert config.database_url == "postgresql+asyncpg://u@db/bellhop"
    assert config.database_schema == "relay"
    assert config.rate_limit_backend is RateLimitBackend.REDIS
    assert config.redis_url == "redis://cache:6379/1"
    assert config.signing_key_path == Path("/etc/bellhop/key.pem")
    assert config.port == 9000
    # The file is read for that call only, never by a later construction.
    assert RelayConfig().port == 8080


def test_environment_beats_file_and_overrides_beat_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, 'port = 9000\nissuer = "file"\naudience = "file"\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("BELLHOP_CLOUD_PORT", "9100")
    monkeypatch.setenv("BELLHOP_CLOUD_ISSUER", "env")
    monkeypatch.setenv("BELLHOP_CLOUD_STALE_AFTER_S", "30")
    config = load_config(path, issuer="flag")
    assert config.issuer == "flag"  # override > environment > file
    assert config.port == 9100  # environment > file
    assert config.stale_after_s == 30  # environment > default
    assert config.audience == "file"  # file > default
    assert config.host == "0.0.0.0"
    assert config.access_token_ttl_s == 600  # default


def test_overrides_beat_the_environment_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BELLHOP_CLOUD_PORT", "9100")
    assert load_config().port == 9100
    assert load_config(port=9200).port == 9200


def test_every_problem_is_listed_by_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'access_token_ttl_s = 86400\ndatabase_url = "mysql://x"\nbogus = 1\nport = 70000\n',
    )
    message = refused(path)
    assert message.startswith(f"{path}: invalid configuration: ")
    assert "access_token_ttl_s: Input should be less than or equal to 900" in message
    assert "database_url: must start with sqlite:// or postgresql://" in message
    assert "bogus: Extra inputs are not permitted" in message
    assert "port: Input should be less than or equal to 65535" in message


def test_a_bad_value_from_the_environment_names_its_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BELLHOP_CLOUD_PORT", "eighty")
    message = refused(write(tmp_path, "port = 9000\n"))
    assert "port (from BELLHOP_CLOUD_PORT): Input should be a valid integer" in message
    # An override replaces the environment's value, so the variable is not blamed.
    assert "BELLHOP_CLOUD_PORT" not in refused(port=70000)


def test_redis_backend_needs_a_redis_url(tmp_path: Path) -> None:
    message = refused(write(tmp_path, 'rate_limit_backend = "redis"\n'))
    assert 'redis_url: required when rate_limit_backend is "redis"' in message
    assert load_config(rate_limit_backend="redis", redis_url="redis://127.0.0.1:6379/0")


def test_redis_url_must_be_a_redis_url() -> None:
    message = refused(rate_limit_backend="redis", redis_url="http://cache:6379")
    assert "redis_url: must start with redis://, rediss:// or unix://" in message


@pytest.mark.parametrize(("access", "refresh"), [(600, 600), (900, 300)])
def test_refresh_tokens_outlive_access_tokens(access: int, refresh: int) -> None:
    message = refused(access_token_ttl_s=access, refresh_token_ttl_s=refresh)
    assert (
        f"refresh_token_ttl_s ({refresh}) must be longer than access_token_ttl_s ({access})"
        in message
    )
    assert load_config(access_token_ttl_s=access, refresh_token_ttl_s=access + 1)


def test_database_schema_is_for_postgresql_only() -> None:
    message = refused(database_url="sqlite:///relay.db", database_schema="relay")
    assert "database_schema: PostgreSQL only, but database_url is SQLite" in message
    assert load_config(database_url="postgresql://u@db/bellhop", database_schema="relay")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite+aiosqlite://"])
def test_in_memory_sqlite_is_refused(url: str) -> None:
    assert "database_url: in-memory SQLite cannot be shared" in refused(database_url=url)


def test_argon2_memory_covers_every_lane() -> None:
    message = refused(password_memory_kib=16, password_parallelism=4)
    assert "password_memory_kib (16) must be at least 8 per password_parallelism lane (32)" in (
        message
    )
    assert load_config(password_memory_kib=32, password_parallelism=4)


def test_every_combination_problem_is_listed(tmp_path: Path) -> None:
    message = refused(
        write(
            tmp_path,
            'rate_limit_backend = "redis"\nrefresh_token_ttl_s = 60\ndatabase_schema = "relay"\n',
        )
    )
    for field in ("redis_url", "refresh_token_ttl_s", "access_token_ttl_s", "database_schema"):
        assert field in message


def test_direct_construction_is_validated_too() -> None:
    # Embedders and tests build RelayConfig themselves; the relay gets no less checking.
    with pytest.raises(ValueError, match="redis_url: required"):
        RelayConfig(rate_limit_backend=RateLimitBackend.REDIS)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert refused(missing) == f"config file not found: {missing}"
    assert refused(tmp_path) == f"config file not found: {tmp_path}"


def test_bad_toml_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "port = = 1")
    assert refused(path).startswith(f"{path}: not valid TOML: ")
    path.write_bytes(b'issuer = "\xff"\n')
    assert refused(path).startswith(f"{path}: not valid TOML: ")
