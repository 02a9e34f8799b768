"""Device provisioning: registry entry, broker credentials, ACL and bundles.

    provisioner = Provisioner(
        hotel_id="lisbon-1",
        store=EdgeStore.open(config.database_path),
        accounts_path=data_dir / "broker" / "accounts.json",
        broker_files=BrokerFiles.in_dir(Path("/etc/mosquitto/bellhop")),
        reload=SignalReload(Path("/run/mosquitto/mosquitto.pid")),
        endpoint=BrokerEndpoint("gateway.lisbon-1.lan"),
        ca_pem=HotelPki(tls_dir).ca_pem(),
    )
    bundle = provisioner.add_device("101", "r101-thermostat", DeviceKind.THERMOSTAT)
    write_bundles(out_dir, [bundle], SiteSettings(timezone="WET0WEST,M3.5.0/1,M10.5.0"))

The gateway keeps only password hashes (`accounts.json`, mode 0600); the
plaintext exists once, in the bundle written at add or rotate time. Every
change rewrites Mosquitto's password file and ACL (rendered by
`bellhop_edge.broker`) and tells the broker to reload, which applies at once:
a revoked or rotated device still connected is disconnected by the broker.
Decisions are recorded in docs/provisioning.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import Channel, DeviceKind

from bellhop_edge.clock import now_ms
from bellhop_edge.core.model import Connectivity, Device, Room
from bellhop_edge.core.ops import PutDevice, PutRoom, WriteOp
from bellhop_edge.errors import (
    AccountFileError,
    AlreadyProvisionedError,
    InvalidDeviceError,
    ReloadFailedError,
    UnknownDeviceError,
)
from bellhop_edge.files import write_atomic
from bellhop_edge.provisioning import broker_files as broker
from bellhop_edge.store import EdgeStore

__all__ = [
    "HEADER_FORMAT",
    "BrokerEndpoint",
    "BrokerFiles",
    "Bundle",
    "BundleFiles",
    "CommandReload",
    "DeviceCredentials",
    "NewDevice",
    "Provisioner",
    "Reload",
    "SignalReload",
    "SiteSettings",
    "render_header",
    "render_simulator",
    "write_bundles",
]

HEADER_FORMAT: Final = 1
"""`BELLHOP_PROVISIONING_FORMAT` of the firmware header (docs/firmware.md)."""
_ACCOUNTS_FORMAT: Final = 1
_ROOM_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")
_TIMEZONE = re.compile(r"[\x21-\x7e]{1,64}")


# -- records ----------------------------------------------------------------------------
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
        if len(self.wifi_ssid.encode()) > 32 or len(self.wifi_password.encode()) > 64:
            raise InvalidDeviceError("Wi-Fi SSID is at most 32 bytes and its password 64")


@dataclass(frozen=True, slots=True)
class NewDevice:
    """A device to register and give credentials. A missing room is created."""

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
    headers: tuple[Path, ...]
    simulator: Path | None
    ca: Path | None


# -- broker reload ---------------------------------------------------------------------
Reload = Callable[[], None]
"""Tells the broker to re-read its password file and ACL; raises ReloadFailedError."""


@dataclass(frozen=True, slots=True)
class SignalReload:
    """SIGHUP to the pid in Mosquitto's `pid_file` (the user must be allowed to signal it)."""

    pid_file: Path

    def __call__(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise ReloadFailedError(
                f"files written, but the broker was not reloaded ({self.pid_file}: {exc}); "
                "they take effect at its next reload or restart"
            ) from None


@dataclass(frozen=True, slots=True)
class CommandReload:
    """A command such as `systemctl reload mosquitto`, run without a shell."""

    argv: tuple[str, ...]
    timeout_s: float = 30.0

    @classmethod
    def parse(cls, command: str) -> CommandReload:
        argv = tuple(shlex.split(command))
        if not argv:
            raise InvalidDeviceError("the reload command is empty")
        return cls(argv)

    def __call__(self) -> None:
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                self.argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReloadFailedError(
                f"files written, but `{shlex.join(self.argv)}`: {exc}"
            ) from None
        if done.returncode != 0:
            raise ReloadFailedError(
                f"files written, but `{shlex.join(self.argv)}` exited {done.returncode}: "
                f"{done.stderr.strip()[:500]}"
            )


# -- the accounts file ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Stored:
    account: broker.BrokerAccount
    issued_at: int


class _AccountFile:
    """`accounts.json`: the broker accounts of one hotel, hashes only, mode 0600.

    Every change happens under an exclusive lock on a sibling lock file, so
    two `bellhop devices` commands never lose each other's accounts.
    """

    def __init__(self, path: Path, hotel_id: str) -> None:
        self.path = path
        self.hotel_id = hotel_id

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load(self) -> dict[str, _Stored]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AccountFileError(f"{self.path}: cannot read the broker accounts: {exc}") from None
        try:
            if doc["format"] != _ACCOUNTS_FORMAT:
                raise AccountFileError(f"{self.path}: unknown format {doc['format']!r}")
            if doc["hotel_id"] != self.hotel_id:
                raise AccountFileError(
                    f"{self.path} holds hotel {doc['hotel_id']!r}, not {self.hotel_id!r}"
                )
            out: dict[str, _Stored] = {}
            for row in doc["accounts"]:
                account = broker.BrokerAccount(
                    username=str(row["username"]),
                    password_hash=str(row["password_hash"]),
                    role=broker.AccountRole(row["role"]),
                    hotel_id=self.hotel_id,
                    device_id=row.get("device_id"),
                )
                out[account.username] = _Stored(account, int(row["issued_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise AccountFileError(f"{self.path}: invalid broker accounts: {exc!r}") from None
        return out

    def save(self, accounts: dict[str, _Stored]) -> None:
        rows = [
            {
                "username": s.account.username,
                "password_hash": s.account.password_hash,
                "role": s.account.role.value,
                "device_id": s.account.device_id,
                "issued_at": s.issued_at,
            }
            for s in sorted(accounts.values(), key=lambda s: s.account.username)
        ]
        doc = {"format": _ACCOUNTS_FORMAT, "hotel_id": self.hotel_id, "accounts": rows}
        write_atomic(self.path, json.dumps(doc, indent=1) + "\n", mode=0o600)


def _check_device_id(device_id: str) -> None:
    try:
        codec.topic("h", device_id, Channel.STATUS)
    except DecodeError as exc:
        raise InvalidDeviceError(exc.detail) from None
    if device_id.startswith("gateway-"):
        raise InvalidDeviceError(f"device id {device_id!r}: 'gateway-' names the gateway's account")


# -- the operations ----------------------------------------------------------------------
class Provisioner:
    """Adds, lists, revokes and rotates the devices of one hotel.

    Registry changes go to the gateway's SQLite (`EdgeStore`), which a running
    gateway picks up within seconds; broker changes go to the accounts file,
    then to Mosquitto's password file and ACL, then `reload` is called. With
    `reload=None` the files are written and the broker is left alone.
    """

    def __init__(
        self,
        *,
        hotel_id: str,
        store: EdgeStore,
        accounts_path: Path,
        broker_files: BrokerFiles,
        reload: Reload | None,
        endpoint: BrokerEndpoint,
        ca_pem: str | None,
    ) -> None:
        try:
            codec.broadcast_topic(hotel_id)
        except DecodeError as exc:
            raise InvalidDeviceError(exc.detail) from None
        self.hotel_id = hotel_id
        self._store = store
        self._accounts = _AccountFile(accounts_path, hotel_id)
        self.broker_files = broker_files
        self._reload = reload
        self.endpoint = endpoint
        self._ca_pem = ca_pem

    @property
    def gateway_username(self) -> str:
        return f"gateway-{self.hotel_id}"

    # -- devices ----------------------------------------------------------------------
    def add_device(
        self,
        room_id: str,
        device_id: str,
        kind: DeviceKind,
        *,
        room_name: str | None = None,
        floor: int | None = None,
    ) -> Bundle:
        """Register the device (creating its room if missing) and issue its credentials."""
        (bundle,) = self.add_devices([NewDevice(device_id, room_id, kind, room_name, floor)])
        return bundle

    def add_devices(self, devices: Sequence[NewDevice]) -> list[Bundle]:
        """Many devices with one write of the broker files and one reload; all or none."""
        if not devices:
            raise InvalidDeviceError("no devices to add")
        seen: set[str] = set()
        for new in devices:
            _check_device_id(new.device_id)
            if not _ROOM_ID.fullmatch(new.room_id):
                raise InvalidDeviceError(f"room id {new.room_id!r}: 1-64 characters, no spaces")
            if new.device_id in seen:
                raise InvalidDeviceError(f"device {new.device_id!r} is listed twice")
            seen.add(new.device_id)
        with self._accounts.locked():
            accounts = self._accounts.load()
            taken = sorted(seen & {s.account.device_id for s in accounts.values()} - {None})
            if taken:
                raise AlreadyProvisionedError(
                    f"already provisioned: {', '.join(taken[:10])}: rotate their credentials"
                    " or revoke them first"
                )
            self._register(devices)
            now = now_ms()
            bundles = []
            for new in devices:
                password = broker.generate_password()
                account = broker.device_account(self.hotel_id, new.device_id, password)
                accounts[account.username] = _Stored(account, now)
                bundles.append(self._bundle(new.device_id, new.room_id, new.kind, password))
            self._apply(accounts, bundles)
        return bundles

    def _register(self, devices: Sequence[NewDevice]) -> None:
        """Rooms and devices in one transaction: a failed import registers nothing."""
        rooms = {r.room_id: r for r in self._store.list_rooms()}
        ops: list[WriteOp] = []
        for new in devices:
            room = rooms.get(new.room_id)
            if room is None or new.room_name is not None or new.floor is not None:
                wanted = Room(
                    new.room_id,
                    new.room_name if new.room_name is not None else (room.name if room else ""),
                    new.floor if new.floor is not None else (room.floor if room else 0),
                )
                if wanted != room:
                    ops.append(PutRoom(wanted))
                    rooms[new.room_id] = wanted
            existing = self._store.get_device(new.device_id)
            # An unknown device seen on the broker keeps its sightings.
            base = existing or Device(new.device_id, None, None, registered=False)
            ops.append(
                PutDevice(
                    dataclasses.replace(base, room_id=new.room_id, kind=new.kind, registered=True)
                )
            )
        self._store.apply(*ops)
        self._registry_changed()

    def revoke(self, device_id: str, *, keep_registered: bool = False) -> None:
        """Remove the device's credentials (the broker disconnects it) and, unless
        `keep_registered`, its registry entry."""
        with self._accounts.locked():
            accounts = self._accounts.load()
            stored = self._device_account(accounts, device_id)
            del accounts[stored.account.username]
            # Credentials first: a half-done revoke must leave the device locked out.
            self._apply(accounts)
        if not keep_registered and self._store.get_device(device_id) is not None:
            self._store.remove_device(device_id)
            self._registry_changed()

    def rotate(self, device_id: str) -> Bundle:
        """A new password; the old one stops working as soon as the broker reloads."""
        with self._accounts.locked():
            accounts = self._accounts.load()
            stored = self._device_account(accounts, device_id)
            password = broker.generate_password()
            account = broker.device_account(self.hotel_id, device_id, password)
            accounts[stored.account.username] = _Stored(account, now_ms())
            bundle = self._registered_bundle(device_id, password)
            self._apply(accounts, [bundle])
        return bundle

    def export(self, device_id: str) -> Bundle:
        """The device's bundle without its password (only its hash is kept)."""
        with self._accounts.locked():
            self._device_account(self._accounts.load(), device_id)
        return self._registered_bundle(device_id, None)

    def list_devices(self) -> list[DeviceCredentials]:
        """Registered devices and any account without a registry entry, by device id."""
        with self._accounts.locked():
            accounts = self._accounts.load()
        by_device = {s.account.device_id: s for s in accounts.values() if s.account.device_id}
        out = []
        for device in self._store.list_devices():
            stored = by_device.pop(device.device_id, None)
            out.append(
                DeviceCredentials(
                    device.device_id,
                    device.room_id,
                    device.kind,
                    stored.account.username if stored else None,
                    stored.issued_at if stored else None,
                    device.connectivity,
                    registered=True,
                )
            )
        for device_id, stored in by_device.items():
            out.append(
                DeviceCredentials(
                    device_id,
                    None,
                    None,
                    stored.account.username,
                    stored.issued_at,
                    Connectivity.UNKNOWN,
                    registered=False,
                )
            )
        return sorted(out, key=lambda c: c.device_id)

    # -- the gateway's own account ------------------------------------------------------
    def gateway_account(self, secret_file: Path, *, rotate: bool = False) -> str:
        """Create (or with `rotate`, replace) the gateway's broker account.

        Its password goes to `secret_file` (mode 0600), which the gateway's
        `mqtt.password_file` points at. Returns the username.
        """
        with self._accounts.locked():
            accounts = self._accounts.load()
            if self.gateway_username in accounts and not rotate:
                raise AlreadyProvisionedError(
                    f"{self.gateway_username} exists: rotate it to get a new password"
                )
            password = broker.generate_password()
            write_atomic(secret_file, password + "\n", mode=0o600)
            account = broker.gateway_account(self.hotel_id, password)
            accounts[account.username] = _Stored(account, now_ms())
            self._apply(accounts)
        return self.gateway_username

    def sync(self) -> None:
        """Rewrite the broker files from the accounts file and reload (after a restore)."""
        with self._accounts.locked():
            self._apply(self._accounts.load())

    # -- internals ------------------------------------------------------------------------
    def _registry_changed(self) -> None:
        """A running gateway polls the registry version and reloads within seconds."""
        self._store.bump_registry_version()

    def _device_account(self, accounts: dict[str, _Stored], device_id: str) -> _Stored:
        for stored in accounts.values():
            if stored.account.device_id == device_id:
                return stored
        raise UnknownDeviceError(f"device {device_id!r} has no broker account")

    def _apply(self, accounts: dict[str, _Stored], bundles: Sequence[Bundle] = ()) -> None:
        self._accounts.save(accounts)
        # Gateway first, then devices by name: a stable, reviewable diff.
        ordered = sorted(
            (s.account for s in accounts.values()),
            key=lambda a: (a.role is not broker.AccountRole.GATEWAY, a.username),
        )
        # 0640: the broker reads them through the directory's group (deploy/mosquitto).
        write_atomic(self.broker_files.password_file, broker.render_passwd(ordered), mode=0o640)
        write_atomic(self.broker_files.acl_file, broker.render_acl(ordered), mode=0o640)
        if self._reload is not None:
            try:
                self._reload()
            except ReloadFailedError as exc:
                raise ReloadFailedError(str(exc), bundles) from None

    def _registered_bundle(self, device_id: str, password: str | None) -> Bundle:
        device = self._store.get_device(device_id)
        if device is None or device.kind is None:
            raise UnknownDeviceError(
                f"device {device_id!r} has credentials but no kind in the registry:"
                " add it again after revoking"
            )
        return self._bundle(device_id, device.room_id, device.kind, password)

    def _bundle(
        self, device_id: str, room_id: str | None, kind: DeviceKind, password: str | None
    ) -> Bundle:
        return Bundle(
            hotel_id=self.hotel_id,
            device_id=device_id,
            room_id=room_id,
            kind=kind,
            username=device_id,
            password=password,
            broker=self.endpoint,
            ca_pem=self._ca_pem,
        )


# -- bundle files --------------------------------------------------------------------------
def _c_string(value: str) -> str:
    """A C++ string literal of `value`'s UTF-8 bytes; octal escapes never run on."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        if 0x20 <= byte < 0x7F and char not in '"\\?':
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def render_header(bundle: Bundle, site: SiteSettings) -> str:
    """`include/provisioning.h` for the firmware, format 1 (docs/firmware.md)."""
    if bundle.ca_pem is None:
        raise InvalidDeviceError("the firmware needs the hotel CA: run `bellhop devices ca`")
    if not bundle.broker.tls:
        raise InvalidDeviceError("the firmware connects over TLS only")
    pem = bundle.ca_pem.strip() + "\n"
    if ")PEM" in pem or not pem.startswith("-----BEGIN CERTIFICATE-----"):
        raise InvalidDeviceError("the CA file is not a PEM certificate")
    password = bundle.password if bundle.password is not None else ""
    lines = [
        f"// Provisioning of device {bundle.device_id} of hotel {bundle.hotel_id}.",
        "// Generated by `bellhop devices`; holds the device's MQTT password: never commit it.",
    ]
    if bundle.password is None:
        lines.append("// No password: re-exported; `bellhop devices rotate` issues a new one.")
    lines += [
        "#pragma once",
        "",
        f"#define BELLHOP_PROVISIONING_FORMAT {HEADER_FORMAT}",
        "",
        "namespace bellhop::provisioning {",
        "",
        f"inline constexpr char kHotelId[] = {_c_string(bundle.hotel_id)};",
        f"inline constexpr char kDeviceId[] = {_c_string(bundle.device_id)};",
        f"inline constexpr char kDeviceKind[] = {_c_string(bundle.kind.value)};",
        f"inline constexpr char kMqttHost[] = {_c_string(bundle.broker.host)};",
        f"inline constexpr unsigned kMqttPort = {bundle.broker.port};",
        f"inline constexpr char kMqttUsername[] = {_c_string(bundle.username)};",
        f"inline constexpr char kMqttPassword[] = {_c_string(password)};",
        f'inline constexpr char kCaCert[] = R"PEM({pem})PEM";',
        f"inline constexpr char kWifiSsid[] = {_c_string(site.wifi_ssid)};",
        f"inline constexpr char kWifiPassword[] = {_c_string(site.wifi_password)};",
        f"inline constexpr char kNtpServer[] = {_c_string(site.ntp_server)};",
        f"inline constexpr char kTimezone[] = {_c_string(site.timezone)};",
        "",
        "}  // namespace bellhop::provisioning",
    ]
    return "\n".join(lines) + "\n"


def render_simulator(bundles: Sequence[Bundle], *, ca_file: Path | None) -> str:
    """The simulator's provisioning JSON (docs/device-protocol.md, "Simulator")."""
    if not bundles:
        raise InvalidDeviceError("no devices to write")
    first = bundles[0]
    if any(b.hotel_id != first.hotel_id or b.broker != first.broker for b in bundles):
        raise InvalidDeviceError("one simulator file holds one hotel and one broker")
    broker_doc: dict[str, Any] = {
        "host": first.broker.host,
        "port": first.broker.port,
        "tls": first.broker.tls,
    }
    if ca_file is not None:
        broker_doc["ca"] = str(ca_file)
    devices = []
    for b in bundles:
        entry: dict[str, Any] = {"device_id": b.device_id, "kind": b.kind.value}
        if b.room_id is not None:
            entry["room_id"] = b.room_id
        entry["username"] = b.username
        if b.password is not None:
            entry["password"] = b.password
        devices.append(entry)
    doc = {"hotel_id": first.hotel_id, "broker": broker_doc, "devices": devices}
    return json.dumps(doc, indent=2) + "\n"


def write_bundles(
    out_dir: Path,
    bundles: Sequence[Bundle],
    site: SiteSettings,
    *,
    simulator_name: str | None = None,
    headers: bool = True,
    simulator: bool = True,
) -> BundleFiles:
    """One firmware header per device, one simulator file for all, and `ca.pem`.

    Secrets are written 0600 in a 0700 directory. The simulator file names
    the CA by its absolute path, as the simulator resolves it from its own
    working directory.
    """
    if not bundles:
        raise InvalidDeviceError("no devices to write")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    out_dir = out_dir.resolve()
    ca_file: Path | None = None
    ca_pem = bundles[0].ca_pem
    if ca_pem is not None and bundles[0].broker.tls:
        ca_file = out_dir / "ca.pem"
        write_atomic(ca_file, ca_pem, mode=0o644)
    header_files = []
    # The firmware speaks TLS only: without the hotel CA there is no header to write.
    if headers and ca_pem is not None and bundles[0].broker.tls:
        for bundle in bundles:
            path = out_dir / f"{bundle.device_id}.h"
            write_atomic(path, render_header(bundle, site), mode=0o600)
            header_files.append(path)
    simulator_file = None
    if simulator:
        name = simulator_name or (
            f"{bundles[0].device_id}.json" if len(bundles) == 1 else "devices.json"
        )
        simulator_file = out_dir / name
        write_atomic(simulator_file, render_simulator(bundles, ca_file=ca_file), mode=0o600)
    return BundleFiles(tuple(header_files), simulator_file, ca_file)
