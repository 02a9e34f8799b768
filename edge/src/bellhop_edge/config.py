"""Typed configuration of one gateway: a TOML file, the environment, overrides.

    config = load_config(Path("/etc/bellhop/edge.toml"))

Loaded once and passed down; nothing reads the environment later. Each
section is one model, used as it is by the part it configures (the rule
engine takes `RulesConfig`, retention `RetentionConfig`), so a limit is
checked in one place and `bellhop edge check-config` refuses exactly what
`bellhop edge run` would. Every error names its field.

Precedence: `overrides` (command-line flags, tests), then the environment
(prefix `BELLHOP_EDGE_`, `__` between levels, e.g. `BELLHOP_EDGE_MQTT__PORT`),
then the file (pydantic-settings' TOML source), then the defaults. Every
setting is described in docs/edge-gateway.md, "Configuration".
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import Channel, DeviceKind
from pydantic import (
    AfterValidator,
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

from bellhop_edge.errors import ConfigError

__all__ = [
    "ApiConfig",
    "BridgeConfig",
    "CommandsConfig",
    "DeviceEntry",
    "EdgeConfig",
    "InfluxConfig",
    "LivenessConfig",
    "MetricsConfig",
    "MqttConfig",
    "NotifyConfig",
    "RetentionConfig",
    "RoomEntry",
    "RulesConfig",
    "StoreConfig",
    "load_config",
]

_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
_ROOM_ID = re.compile(r"^[^\s\x00-\x1f\x7f]{1,64}$")

Seconds = Annotated[float, Field(gt=0)]


def _ordered(section: BaseModel, low: str, high: str) -> None:
    """`low` must not exceed `high`; the error names both fields."""
    a, b = getattr(section, low), getattr(section, high)
    if a > b:
        raise ValueError(f"{low} ({a:g}) must not exceed {high} ({b:g})")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MqttConfig(_Section):
    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = Field(default=None, min_length=1, max_length=128)
    password: str | None = Field(default=None, repr=False)
    # A file holding the password keeps the secret out of the config and the environment.
    password_file: Path | None = None
    tls_ca: Path | None = None
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    connect_timeout_s: Seconds = 10.0
    reconnect_min_s: Seconds = 0.5
    reconnect_max_s: Seconds = 30.0
    # The device protocol's limit (4,096 bytes); a gateway may only tighten it.
    max_payload_bytes: int = Field(
        default=codec.DEFAULT_MAX_BYTES, ge=256, le=codec.DEFAULT_MAX_BYTES
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        _ordered(self, "reconnect_min_s", "reconnect_max_s")
        return self

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
    jwt_audience: str = Field(default="bellhop-edge", min_length=1)
    # Loopback only: lets the demo and tests run without tokens. Never on a LAN address.
    allow_unauthenticated_loopback: bool = False

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("HOST:PORT, e.g. '0.0.0.0:50051' (port 0 picks a free one)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]


class LivenessConfig(_Section):
    heartbeat_timeout_s: Seconds = 60.0
    check_interval_s: Seconds = 1.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _ordered(self, "check_interval_s", "heartbeat_timeout_s")
        return self


class CommandsConfig(_Section):
    default_timeout_s: Seconds = 5.0
    max_timeout_s: Seconds = 60.0
    default_ttl_s: Seconds = 30.0
    # A device remembers the last 64 command ids (docs/device-protocol.md): expiries
    # are kept short so that an id can never be run again after it is forgotten.
    max_ttl_s: Seconds = 3600.0
    max_in_flight: int = Field(default=4096, ge=1)
    # Per fleet command: enough to keep a 2,000-device hotel under 2 s, few
    # enough that the broker's and the devices' queues never overflow.
    fleet_max_in_flight: int = Field(default=512, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _ordered(self, "default_timeout_s", "max_timeout_s")
        _ordered(self, "default_ttl_s", "max_ttl_s")
        _ordered(self, "fleet_max_in_flight", "max_in_flight")
        return self


class RulesConfig(_Section):
    """Thresholds of every alert rule, the same for every room (docs/alert-rules.md)."""

    temperature_min_c: float = Field(default=16.0, ge=-50, le=100)
    temperature_max_c: float = Field(default=28.0, ge=-50, le=100)
    # Back inside the range by this much before the alert clears.
    temperature_hysteresis_c: float = Field(default=0.5, ge=0)
    gas_ppm_max: float = Field(default=400.0, gt=0)
    gas_hysteresis_ppm: float = Field(default=50.0, ge=0)
    door_open_max_s: Seconds = 300.0
    battery_low_pct: float = Field(default=15.0, ge=0, le=100)
    # A new battery, not a reading that wobbles by a percent, clears it.
    battery_hysteresis_pct: float = Field(default=5.0, ge=0, le=100)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        span = self.temperature_max_c - self.temperature_min_c
        if span <= 2 * self.temperature_hysteresis_c:
            raise ValueError(
                f"temperature_min_c ({self.temperature_min_c:g}) must be below"
                f" temperature_max_c ({self.temperature_max_c:g}) by more than twice"
                f" temperature_hysteresis_c ({self.temperature_hysteresis_c:g})"
            )
        if self.gas_hysteresis_ppm >= self.gas_ppm_max:
            raise ValueError(
                f"gas_hysteresis_ppm ({self.gas_hysteresis_ppm:g}) must be below"
                f" gas_ppm_max ({self.gas_ppm_max:g})"
            )
        return self


class RetentionConfig(_Section):
    """How long each kind of record is kept (docs/edge-store.md, "Retention")."""

    raw_retention_s: Seconds = 7 * 86400
    rollup_bucket_s: Seconds = 300
    rollup_retention_s: Seconds = 400 * 86400
    events_retention_s: Seconds = 90 * 86400
    # Unacked outbox events older than this are dropped so that a gateway that
    # is never connected cannot fill its disk; the bridge sees the gap and
    # resyncs with a snapshot. None keeps them forever.
    outbox_max_age_s: Seconds | None = 30 * 86400
    # Unacknowledged outbox events kept at most; past it the oldest raw
    # telemetry is thinned (never alarms, alerts, command results or registry
    # changes) and a gap record tells the cloud. None: no cap.
    outbox_max_events: int | None = Field(default=2_000_000, ge=1000)
    run_every_s: Seconds = 600
    # Work per transaction, so the writer is never held for long.
    series_per_chunk: int = Field(default=200, ge=1)
    rows_per_chunk: int = Field(default=20_000, ge=1)


class StoreConfig(_Section):
    # NORMAL survives a process crash; FULL also the last commits on power loss.
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    batch_max_ops: int = Field(default=2000, ge=1)
    batch_max_delay_ms: int = Field(default=0, ge=0, le=1000)
    # Uncommitted writes before ingest holds messages back (see docs/edge-store.md).
    max_pending_ops: int = Field(default=50_000, ge=16)
    # The database never grows past this; writes beyond it fail as on a full
    # disk (QoS 1 messages are then not acknowledged). None: the disk's size.
    max_size_mib: int | None = Field(default=None, ge=1)
    # Receipts of the QoS 1 messages committed last, by which a message the
    # broker sends again after a crash is recognised (core/replay.py). Must
    # exceed the broker's in-flight window (1,000 in the generated config).
    replay_receipts: int = Field(default=10_000, ge=2_000, le=1_000_000)


class BridgeConfig(_Section):
    """The bridge to the cloud relay (docs/bridge.md); active once the gateway is enrolled."""

    enabled: bool = True
    connect_timeout_s: Seconds = 10.0
    reconnect_min_s: Seconds = 1.0
    reconnect_max_s: Seconds = 60.0
    # Events per batch frame (the relay's window bounds what is in flight).
    batch_events: int = Field(default=500, ge=1, le=1000)
    # A private CA for a relay whose certificate public CAs do not sign.
    tls_ca: Path | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _ordered(self, "reconnect_min_s", "reconnect_max_s")
        return self


class MetricsConfig(_Section):
    """Prometheus metrics over HTTP (docs/edge-gateway.md, "Metrics")."""

    # Off unless asked for: the endpoint has no authentication, and its figures
    # (devices online, message rates) say something about the hotel.
    enabled: bool = False
    # Loopback by default; a LAN address lets the hotel's Prometheus scrape it.
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("HOST:PORT, e.g. '0.0.0.0:9464' (port 0 picks a free one)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class InfluxConfig(_Section):
    """Telemetry and device events to an InfluxDB on the hotel's LAN (docs/influx.md)."""

    enabled: bool = False
    url: str = Field(default="http://127.0.0.1:8086", pattern=r"^https?://[^\s/?#@]+(/[^\s?#]*)?$")
    org: str = Field(default="bellhop", min_length=1, max_length=256)
    bucket: str = Field(default="bellhop", min_length=1, max_length=256)
    # A secret: never logged, never in the model's repr. A file keeps it out of the config.
    token: SecretStr | None = Field(default=None, min_length=1)
    token_file: Path | None = None
    # The `org` tag of every point: the gateway does not know its organisation by itself.
    organisation: str | None = Field(default=None, min_length=1, max_length=64)
    batch_size: int = Field(default=5000, ge=1, le=50_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    retry_min_s: Seconds = 0.5
    retry_max_s: Seconds = 30.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if self.enabled and self.token is None and self.token_file is None:
            raise ValueError("token or token_file: required when enabled")
        _ordered(self, "retry_min_s", "retry_max_s")
        return self

    def resolved_token(self) -> str:
        if self.token_file is not None:
            return self.token_file.read_text().strip()
        return "" if self.token is None else self.token.get_secret_value()


# core.model's AlertKind, by value (the core imports this module, not the other way).
_AlertKind = Literal[
    "temperature_out_of_range", "gas", "door_left_open", "breach", "battery_low", "device_offline"
]


def _channel(url: SecretStr) -> SecretStr:
    # Imported here: Apprise takes a second to load, which only a [notify] should pay.
    from bellhop_bridge import notify_channels

    # The reason only: a URL holds its secrets, and errors are printed and logged. The
    # channel is there to reach the hotel's own network: private addresses are its own.
    why = notify_channels.check_url(url.get_secret_value(), notify_channels.LAN)
    if why is not None:
        raise ValueError(why)
    return url


class NotifyConfig(_Section):
    """Alerts told to staff through a channel on the hotel's LAN, internet or not
    (docs/notifications.md, "On site"). On when `channels` lists any."""

    # Apprise URLs tried in order, each a secret: never logged, never in the repr.
    channels: tuple[Annotated[SecretStr, AfterValidator(_channel)], ...] = Field(
        default=(), max_length=5
    )
    # Empty: every kind, every severity (the names of the LAN API's alerts).
    kinds: tuple[_AlertKind, ...] = ()
    severities: tuple[Literal["info", "warning", "critical"], ...] = ()
    poll_s: float = Field(default=1.0, gt=0, le=60)
    send_timeout_s: float = Field(default=30.0, gt=0, le=300)
    retry_base_s: Seconds = 5.0
    retry_max_s: Seconds = 300.0
    attempts: int = Field(default=3, ge=1, le=20)  # per channel, then the next channel

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _ordered(self, "retry_base_s", "retry_max_s")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.channels)


class RoomEntry(_Section):
    room_id: str = Field(pattern=_ROOM_ID.pattern)
    name: str = Field(default="", max_length=128)
    floor: int = Field(default=0, ge=-100, le=1000)


class DeviceEntry(_Section):
    device_id: str
    room_id: str = Field(pattern=_ROOM_ID.pattern)
    kind: DeviceKind

    @field_validator("device_id")
    @classmethod
    def _device_id(cls, value: str) -> str:
        try:
            codec.topic("h", value, Channel.STATUS)
        except DecodeError as exc:
            raise ValueError(exc.detail) from None
        return value


# The file being loaded; pydantic-settings takes a TOML file from the class,
# and one class serves every file (see `load_config`).
_toml_file: ContextVar[Path | None] = ContextVar("bellhop_edge_toml_file", default=None)


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
    rules: RulesConfig = RulesConfig()
    retention: RetentionConfig = RetentionConfig()
    store: StoreConfig = StoreConfig()
    bridge: BridgeConfig = BridgeConfig()
    influx: InfluxConfig = InfluxConfig()
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()
    # Declarative registry: upserted at start-up (devices may also be added later).
    rooms: tuple[RoomEntry, ...] = ()
    devices: tuple[DeviceEntry, ...] = ()

    @field_validator("hotel_id")
    @classmethod
    def _check_hotel_id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("lower-case letters, digits, '-' and '_', at most 48, e.g. 'lisbon-1'")
        return value

    @model_validator(mode="after")
    def _unique_registry(self) -> Self:
        for what, ids in (
            ("rooms", [r.room_id for r in self.rooms]),
            ("devices", [d.device_id for d in self.devices]),
        ):
            twice = sorted({i for i in ids if ids.count(i) > 1})
            if twice:
                raise ValueError(f"{what}: listed more than once: {', '.join(twice)}")
        return self

    @property
    def database_path(self) -> Path:
        return self.data_dir / "edge.db"

    @property
    def tokens_path(self) -> Path:
        """Where staff tokens minted on the gateway are kept (hashed)."""
        return self.api.tokens_file or self.data_dir / "staff-tokens.json"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_toml_file.get())
        return (init_settings, env_settings, toml)


@contextmanager
def _reading(path: Path | None) -> Iterator[None]:
    token = _toml_file.set(path)
    try:
        yield
    finally:
        _toml_file.reset(token)


def load_config(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> EdgeConfig:
    """Read `path` (TOML), apply the environment and `overrides`, validate.

    Raises `ConfigError` listing every invalid field, never a traceback.
    """
    if path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with _reading(path):
            return EdgeConfig(**dict(overrides or {}))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f"{path}: " if path else ""
    lines = [f"{where}invalid configuration:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "(root)"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"  {field}: {message}")
    return "\n".join(lines)
