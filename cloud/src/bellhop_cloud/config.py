"""Typed configuration of the relay, loaded once from a TOML file and the environment.

Precedence: explicit overrides (command-line flags), then the environment
(`BELLHOP_CLOUD_*`), then the file, then defaults. The
result is frozen and passed down; nothing reads the environment later.
"""

from __future__ import annotations

import os
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bellhop_cloud.errors import ConfigError

ENV_PREFIX = "BELLHOP_CLOUD_"
MAX_ACCESS_TOKEN_TTL_S = 900


class RateLimitBackend(StrEnum):
    MEMORY = "memory"  # one process: the embedded default
    REDIS = "redis"  # several relay nodes share counters


class RelayConfig(BaseSettings):
    """Everything the relay needs to run; defaults suit one process on a laptop."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    database_url: str = Field(
        default="sqlite+aiosqlite:///bellhop-cloud.db",
        description="sqlite:///FILE (default) or postgresql://USER@HOST/DB",
    )
    database_schema: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="PostgreSQL schema"
    )
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_timeout_s: float = Field(default=10.0, gt=0, description="wait for a pooled connection")
    migrate_on_start: bool = True

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)

    issuer: str = "bellhop-cloud"
    audience: str = "bellhop"
    signing_key_path: Path = Path("bellhop-cloud-signing-key.pem")
    access_token_ttl_s: int = Field(default=600, ge=30, le=MAX_ACCESS_TOKEN_TTL_S)
    refresh_token_ttl_s: int = Field(default=30 * 86400, ge=60)

    # argon2id; the defaults are RFC 9106's second recommended option.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=64 * 1024, ge=8)
    password_parallelism: int = Field(default=4, ge=1)

    login_account_limit: int = Field(default=5, ge=1, description="failed logins per window")
    login_account_window_s: float = Field(default=300.0, gt=0)
    login_address_limit: int = Field(default=30, ge=1, description="attempts per window")
    login_address_window_s: float = Field(default=60.0, gt=0)
    rate_limit_backend: RateLimitBackend = RateLimitBackend.MEMORY
    redis_url: str | None = None
    redis_timeout_s: float = Field(default=1.0, gt=0)

    enrolment_token_ttl_s: int = Field(default=3600, ge=60, le=7 * 86400)
    stale_after_s: float = Field(default=120.0, gt=0, description="freshness window")
    access_cache_s: float = Field(
        default=1.0, ge=0, le=10, description="how long a hotel access check is reused; 0: never"
    )

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept plain URLs and pick the asyncio driver the relay ships with."""
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        if url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            return url
        msg = "database_url must start with sqlite:// or postgresql://"
        raise ValueError(msg)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def load_config(path: Path | None = None, **overrides: Any) -> RelayConfig:
    """Read `path` (TOML, keys as the field names) and the environment.

    Raises ConfigError with every problem listed, never a traceback.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        if any(key.startswith(ENV_PREFIX) for key in os.environ):
            from_env = RelayConfig()
            values.update(from_env.model_dump(include=from_env.model_fields_set))
        values.update(overrides)
        return RelayConfig(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc
