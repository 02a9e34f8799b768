"""Typed configuration of one gateway: a TOML file plus environment overrides.

Loaded once by `load_config` and passed down; nothing reads the environment
later. Environment variables win over the file and use the prefix
`BELLHOP_EDGE_` with `__` between levels, e.g. `BELLHOP_EDGE_MQTT__PORT=1884`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from bellhop_devices.messages import DeviceKind
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from bellhop_edge.errors import ConfigError

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")

Seconds = Annotated[float, Field(gt=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    # A file holding the password keeps the secret out of the config and the environment.
    password_file: Path | None = None
    tls_ca: Path | None = None
    client_id: str | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    connect_timeout_s: Seconds = 10.0
    reconnect_min_s: Seconds = 0.5
    reconnect_max_s: Seconds = 30.0
    max_payload_bytes: int = Field(default=8192, ge=256, le=262144)

    def resolved_password(self) -> str | None:
        if self.password_file is not None:
            return self.password_file.read_text().strip()
        return self.password


class ApiConfig(_Section):
    listen: str = "127.0.0.1:50051"
    # Staff tokens issued on the gateway (`bellhop edge token create`), stored hashed.
    tokens_file: Path | None = None
    # A cached copy of the cloud's JWKS: staff tokens issued by the cloud verify offline.
    jwks_file: Path | None = None
    jwt_issuer: str | None = None
    jwt_audience: str = "bellhop-edge"
    # Loopback only: lets the demo and tests run without tokens. Never on a LAN address.
    allow_unauthenticated_loopback: bool = False


class LivenessConfig(_Section):
    heartbeat_timeout_s: Seconds = 60.0
    check_interval_s: Seconds = 1.0


class CommandsConfig(_Section):
    default_timeout_s: Seconds = 5.0
    max_timeout_s: Seconds = 60.0
    default_ttl_s: Seconds = 30.0
    max_in_flight: int = Field(default=4096, ge=1)
    # Per fleet command: enough to keep a 2,000-device hotel under 2 s, few
    # enough that the broker's and the devices' queues never overflow.
    fleet_max_in_flight: int = Field(default=512, ge=1)


class RulesSection(_Section):
    temperature_min_c: float = 16.0
    temperature_max_c: float = 28.0
    temperature_hysteresis_c: float = Field(default=0.5, ge=0)
    gas_ppm_max: float = 400.0
    door_open_max_s: Seconds = 300.0
    battery_low_pct: float = Field(default=15.0, ge=0, le=100)


class RetentionConfig(_Section):
    raw_retention_s: Seconds = 7 * 86400
    rollup_bucket_s: Seconds = 300
    rollup_retention_s: Seconds = 400 * 86400
    events_retention_s: Seconds = 90 * 86400
    run_every_s: Seconds = 600


class StoreConfig(_Section):
    # NORMAL survives a process crash; FULL also the last commits on power loss.
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    batch_max_ops: int = Field(default=2000, ge=1)
    batch_max_delay_ms: int = Field(default=0, ge=0)
    # Uncommitted writes before ingest holds messages back (see docs/edge-store.md).
    max_pending_ops: int = Field(default=50_000, ge=16)
    # The database never grows past this; writes beyond it fail as on a full
    # disk (QoS 1 messages are then not acknowledged). None: the disk's size.
    max_size_mib: int | None = Field(default=None, ge=1)


class RoomEntry(_Section):
    room_id: str
    name: str = ""
    floor: int = 0


class DeviceEntry(_Section):
    device_id: str
    room_id: str
    kind: DeviceKind


class EdgeConfig(BaseSettings):
    """Everything one gateway needs; see docs/edge-gateway.md, "Configuration"."""

    model_config = SettingsConfigDict(
        env_prefix="BELLHOP_EDGE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    hotel_id: str
    data_dir: Path = Path("var/edge")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mqtt: MqttConfig = MqttConfig()
    api: ApiConfig = ApiConfig()
    liveness: LivenessConfig = LivenessConfig()
    commands: CommandsConfig = CommandsConfig()
    rules: RulesSection = RulesSection()
    retention: RetentionConfig = RetentionConfig()
    store: StoreConfig = StoreConfig()
    # Declarative registry: upserted at start-up (devices may also be added later).
    rooms: tuple[RoomEntry, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()

    @field_validator("hotel_id")
    @classmethod
    def _check_hotel_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("lower-case letters, digits, '-' and '_', at most 48, e.g. 'lisbon-1'")
        return value

    @property
    def database_path(self) -> Path:
        return self.data_dir / "edge.db"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init values; the environment overrides it.
        return (env_settings, init_settings)


def load_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> EdgeConfig:
    """Read `path` (TOML), apply the environment and `overrides`, validate."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    data.update(overrides or {})
    try:
        return EdgeConfig(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f"{path}: " if path else ""
    lines = [f"{where}invalid configuration:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(root)"
        lines.append(f"  {field}: {error['msg']}")
    return "\n".join(lines)
