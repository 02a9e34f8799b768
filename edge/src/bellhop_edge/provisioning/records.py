"""The frozen records provisioning passes around, each checked when it is built.

Where the broker's files are (`BrokerFiles`) and how devices reach it
(`BrokerEndpoint`), the hotel's network and clock for the firmware
(`SiteSettings`), a device to add (`NewDevice`), what a device is handed
(`Bundle`), one line of `list` (`DeviceCredentials`) and the files a bundle
was written to (`BundleFiles`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bellhop_devices.messages import DeviceKind

from bellhop_edge.core.model import Connectivity
from bellhop_edge.errors import InvalidDeviceError

__all__ = [
    "BrokerEndpoint",
    "BrokerFiles",
    "Bundle",
    "BundleFiles",
    "DeviceCredentials",
    "NewDevice",
    "SiteSettings",
]

# A POSIX TZ string: printable ASCII without spaces, within the firmware's 64-byte buffer.
_TIMEZONE: Final = re.compile(r"[\x21-\x7e]{1,64}")


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The files Mosquitto reads, which the gateway owns and rewrites."""

    password_file: Path
    acl_file: Path

    @classmethod
    def in_dir(cls, directory: Path) -> BrokerFiles:
        return cls(directory / "passwd", directory / "acl")


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where devices reach the broker: a name its certificate carries."""

    host: str
    port: int = 8883
    tls: bool = True

    def __post_init__(self) -> None:
        # The host ends up in a C string and a JSON file: no quotes, no spaces.
        if not self.host or any(c.isspace() or c in "\"\\'" for c in self.host):
            raise InvalidDeviceError(f"broker host {self.host!r} is not a host name or address")
        if not 0 < self.port < 65536:
            raise InvalidDeviceError(f"broker port {self.port} is not a TCP port")


@dataclass(frozen=True, slots=True)
class SiteSettings:
    """What the firmware header needs besides the device: the hotel's network and clock.

    Empty Wi-Fi settings mean "from NVS"; an empty NTP server means the MQTT host.
    """

    timezone: str = "UTC0"
    wifi_ssid: str = ""
    wifi_password: str = field(default="", repr=False)
    ntp_server: str = ""

    def __post_init__(self) -> None:
        if not _TIMEZONE.fullmatch(self.timezone):
            raise InvalidDeviceError(f"timezone {self.timezone!r} is not a POSIX TZ string")
        # The firmware copies them into fixed buffers (firmware/esp32/src/settings_store.h).
        if len(self.wifi_ssid.encode()) > 32 or len(self.wifi_password.encode()) > 64:
            raise InvalidDeviceError("Wi-Fi SSID is at most 32 bytes and its password 64")


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device to register and give credentials. A missing room is created.

    Its ids are checked by `Provisioner.add_devices`, which checks every device
    of an import before anything changes.
    """

    device_id: str
    room_id: str
    kind: DeviceKind
    room_name: str | None = None
    floor: int | None = None


@dataclass(frozen=True, slots=True)
class Bundle:
    """Everything one device needs to join the hotel's broker.

    `password` is None in a re-export: the gateway keeps only its hash.
    """

    hotel_id: str
    device_id: str
    room_id: str | None
    kind: DeviceKind
    username: str
    password: str | None = field(repr=False)
    broker: BrokerEndpoint
    ca_pem: str | None


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    """One line of `list`: a registered device and its broker account, if any."""

    device_id: str
    room_id: str | None
    kind: DeviceKind | None
    username: str | None
    issued_at: int | None  # Unix ms of the current password
    connectivity: Connectivity
    registered: bool


@dataclass(frozen=True, slots=True)
class BundleFiles:
    """What `write_bundles` wrote: one header per device, one simulator file, the CA."""

    headers: tuple[Path, ...]
    simulator: Path | None
    ca: Path | None
