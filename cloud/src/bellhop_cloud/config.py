"""Typed configuration of the relay: a TOML file, the environment, overrides.

    config = load_config(Path("relay.toml"), port=9000)

Precedence: explicit overrides (keyword arguments, command-line flags), then
the environment (`BELLHOP_CLOUD_<FIELD>`), then the file (pydantic-settings'
TOML source, keys as the field names), then the defaults. Loaded once, frozen
and passed down; nothing reads the environment later. Combinations that
`bellhop cloud run` could not use are refused here, each error naming its
fields. Every key is listed in docs/cloud-api.md, "Running".
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bellhop_cloud.errors import ConfigError

ENV_PREFIX = "BELLHOP_CLOUD_"
MAX_ACCESS_TOKEN_TTL_S = 900
# argon2 needs at least 8 KiB of memory per lane; below that hashing fails.
ARGON2_MIN_KIB_PER_LANE = 8
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class RateLimitBackend(StrEnum):
    MEMORY = "memory"  # one process: the embedded default
    REDIS = "redis"  # several relay nodes share counters


class BusBackend(StrEnum):
    MEMORY = "memory"  # one process: the embedded default
    REDIS = "redis"  # several relay nodes: commands and live events cross nodes


class InfluxConfig(BaseModel):
    """`[influx]`: every applied point and device event to InfluxDB (docs/influx.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")
    org: str = Field(default="bellhop", min_length=1, max_length=256)
    bucket: str = Field(default="bellhop", min_length=1, max_length=256)
    # A secret: SecretStr keeps it out of reprs, logs and error messages.
    token: SecretStr | None = Field(default=None, min_length=1)
    token_file: Path | None = None
    batch_size: int = Field(default=5000, ge=1, le=50_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retry_min_s: float = Field(default=0.5, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = []
        if self.token is not None and self.token_file is not None:
            problems.append("give token or token_file, not both")
        if self.enabled and self.token is None and self.token_file is None:
            problems.append("token or token_file: required when enabled")
        if self.retry_min_s > self.retry_max_s:
            problems.append(
                f"retry_min_s ({self.retry_min_s:g}) must not exceed retry_max_s"
                f" ({self.retry_max_s:g})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolved_token(self) -> str:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return "" if self.token is None else self.token.get_secret_value()


# The file being loaded; pydantic-settings takes a TOML file from the class,
# and one class serves every file (see `load_config`).
_toml_file: ContextVar[Path | None] = ContextVar("bellhop_cloud_toml_file", default=None)


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
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="addresses or networks whose X-Forwarded-For/-Proto are believed"
    )

    issuer: str = "bellhop-cloud"
    audience: str = "bellhop"
    signing_key_path: Path = Path("bellhop-cloud-signing-key.pem")
    access_token_ttl_s: int = Field(default=600, ge=30, le=MAX_ACCESS_TOKEN_TTL_S)
    refresh_token_ttl_s: int = Field(default=30 * 86400, ge=60)
    session_cache_s: float = Field(
        default=2.0, ge=0, le=60, description="how long reads trust a live session; 0: never"
    )

    # argon2id; the defaults are RFC 9106's second recommended option.
    password_time_cost: int = Field(default=3, ge=1)
    password_memory_kib: int = Field(default=64 * 1024, ge=ARGON2_MIN_KIB_PER_LANE)
    password_parallelism: int = Field(default=4, ge=1)

    login_account_limit: int = Field(default=5, ge=1, description="failed logins per window")
    login_account_window_s: float = Field(default=300.0, gt=0)
    login_address_limit: int = Field(default=30, ge=1, description="attempts per window")
    login_address_window_s: float = Field(default=60.0, gt=0)
    # Each sign-up costs an argon2id hash (64 MiB by default): a few per address.
    register_address_limit: int = Field(default=10, ge=1, description="sign-ups per window")
    register_address_window_s: float = Field(default=600.0, gt=0)
    rate_limit_backend: RateLimitBackend = RateLimitBackend.MEMORY
    redis_url: str | None = None
    redis_timeout_s: float = Field(default=1.0, gt=0)
    # Several relay nodes (docs/scale-out.md): what crosses between them, and who this is.
    bus_backend: BusBackend = BusBackend.MEMORY
    node_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="this relay node's name among several; default: host name and process id",
    )

    # Remote commands (docs/remote-control.md).
    command_wait_max_s: float = Field(
        default=30.0, gt=0, le=300, description="longest a REST caller may wait for a result"
    )
    command_queue_max_s: float = Field(
        default=86_400.0, gt=0, le=7 * 86_400, description="longest a queued command may wait"
    )
    events_replay: int = Field(
        default=1000, ge=0, le=100_000, description="live events kept per organisation for resume"
    )
    # Live event streams (docs/live-events.md).
    events_heartbeat_s: float = Field(default=15.0, ge=0.05, le=300)
    events_queue_max: int = Field(
        default=2000, ge=1, le=100_000, description="events a stream may fall behind, then cut"
    )
    events_recheck_s: float = Field(
        default=5.0, ge=0.05, le=60, description="a stream's session and access are re-checked"
    )
    events_streams_per_session: int = Field(
        default=100, ge=1, le=10_000, description="event streams one session may hold on a node"
    )

    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, le=16 * 1024 * 1024, description="largest request body"
    )

    enrolment_token_ttl_s: int = Field(default=3600, ge=60, le=7 * 86400)
    stale_after_s: float = Field(default=120.0, gt=0, description="freshness window")

    # The bridge endpoint (docs/bridge.md), on a port of its own.
    bridge_host: str | None = Field(default=None, description="default: host")
    bridge_enabled: bool = Field(default=True, description="false: serve REST only")
    bridge_port: int = Field(default=8081, ge=0, le=65535)
    bridge_public_url: str | None = Field(
        default=None,
        pattern=r"^wss?://[^\s/?#@]+/v1/bridge$",
        description="the URL enrolled gateways dial, when a proxy stands in front; "
        "default: ws(s)://<the enrolment request's host>:<bridge_port>/v1/bridge",
    )
    bridge_window_events: int = Field(default=5000, ge=1, le=100_000)
    bridge_window_bytes: int = Field(default=8 << 20, ge=4096, le=64 << 20)
    bridge_heartbeat_s: float = Field(default=15.0, ge=0.05, le=300)
    bridge_handshake_timeout_s: float = Field(default=10.0, gt=0, le=120)
    bridge_revocation_check_s: float = Field(
        default=5.0, gt=0, le=300, description="a revoked gateway is cut off within this"
    )

    # What the bridge brought is kept this long (bridge/retention.py); state is kept always.
    telemetry_retention_days: int = Field(default=90, ge=1, le=3650)
    events_retention_days: int = Field(default=365, ge=1, le=3650)
    alerts_retention_days: int = Field(
        default=365, ge=1, le=3650, description="cleared alerts and finished commands"
    )
    retention_interval_s: float = Field(default=3600.0, ge=1, le=86_400)
    access_cache_s: float = Field(
        default=1.0, ge=0, le=10, description="how long a hotel access check is reused; 0: never"
    )
    influx: InfluxConfig = Field(
        default_factory=InfluxConfig, description="[influx]: the InfluxDB sink, off by default"
    )
    # Alert notifications (docs/notifications.md): the worker that sends what is queued.
    notify_enabled: bool = Field(default=True, description="false: queue, but send nothing")
    notify_poll_s: float = Field(default=1.0, ge=0.05, le=60, description="due rows looked for")
    notify_send_timeout_s: float = Field(default=30.0, gt=0, le=300, description="one send")
    notify_lease_margin_s: float = Field(
        default=30.0, ge=0, le=3600, description="a send's lease is its timeout plus this"
    )
    notify_retry_base_s: float = Field(default=5.0, gt=0, le=3600)
    notify_retry_max_s: float = Field(default=300.0, gt=0, le=86_400)
    notify_attempts: int = Field(default=3, ge=1, le=20, description="per channel")
    notify_concurrency: int = Field(default=8, ge=1, le=64, description="sends at once")
    notify_private_targets: tuple[str, ...] = Field(
        default=(),
        max_length=64,
        description="private networks channels may reach (loopback, RFC 1918, link-local, "
        "...); public addresses always; empty: none",
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
                url = driver + url[len(plain) :]
                break
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        # The store pools connections and the device reader opens its own: an
        # in-memory database would be a different, empty one for each.
        if url.startswith("sqlite") and _sqlite_database(url) in {"", ":memory:"}:
            raise ValueError("in-memory SQLite cannot be shared; give a file, sqlite:///FILE")
        return url

    @field_validator("trusted_proxies", "notify_private_targets")
    @classmethod
    def _networks(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        try:
            return tuple(str(network) for network in parse_networks(values))
        except ValueError as exc:
            raise ValueError(f"not an IP address or network: {exc}") from None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(_REDIS_SCHEMES):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Refuse combinations the relay would fail on later or silently ignore."""
        problems: list[str] = []
        if self.rate_limit_backend is RateLimitBackend.REDIS and self.redis_url is None:
            problems.append('redis_url: required when rate_limit_backend is "redis"')
        if self.bus_backend is BusBackend.REDIS and self.redis_url is None:
            problems.append('redis_url: required when bus_backend is "redis"')
        if self.refresh_token_ttl_s <= self.access_token_ttl_s:
            problems.append(
                f"refresh_token_ttl_s ({self.refresh_token_ttl_s}) must be longer than"
                f" access_token_ttl_s ({self.access_token_ttl_s})"
            )
        if self.database_schema is not None and self.is_sqlite:
            problems.append("database_schema: PostgreSQL only, but database_url is SQLite")
        lanes_kib = ARGON2_MIN_KIB_PER_LANE * self.password_parallelism
        if self.password_memory_kib < lanes_kib:
            problems.append(
                f"password_memory_kib ({self.password_memory_kib}) must be at least"
                f" {ARGON2_MIN_KIB_PER_LANE} per password_parallelism lane ({lanes_kib})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: overrides, then the environment, then the file.
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_file.get())
        return (init_settings, env_settings, toml)


def parse_networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Addresses or CIDR networks; ValueError naming a value that is neither."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


def _sqlite_database(url: str) -> str:
    """The database part of a SQLite URL: `sqlite+aiosqlite:///x.db?mode=ro` gives `x.db`."""
    rest = url.partition("://")[2].partition("?")[0]
    return rest.removeprefix("/")


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _toml_file.set(path)
    try:
        yield
    finally:
        _toml_file.reset(token)


def load_config(path: Path | None = None, **overrides: Any) -> RelayConfig:
    """Read `path` (TOML), apply the environment and `overrides`, validate.

    Raises `ConfigError` listing every problem, each naming its field, never a traceback.
    """
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with _reading(path):
            return RelayConfig(**overrides)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # TOML is UTF-8 only
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, overrides)) from None


def _describe(exc: ValidationError, path: Path | None, overrides: dict[str, Any]) -> str:
    """One line, as `bellhop cloud` prints it: `invalid configuration: port: ...; ...`."""
    # A bad value from the environment is named by its variable: it is not in the file.
    from_env = {name.upper() for name in os.environ if name.upper().startswith(ENV_PREFIX)}
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        field = ".".join(str(part) for part in error["loc"])
        variable = ENV_PREFIX + field.upper()
        if field in RelayConfig.model_fields and field not in overrides and variable in from_env:
            field += f" (from {variable})"
        # Errors of a combination carry no location; their message names the fields.
        problems.append(f"{field}: {message}" if field else message)
    where = f"{path}: " if path else ""
    return f"{where}invalid configuration: {'; '.join(problems)}"
