"""`Provisioner`: adds, lists, revokes and rotates the devices of one hotel.

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
`broker_files`) and tells the broker to reload, which applies at once: a
revoked or rotated device still connected is disconnected by the broker.
Decisions are recorded in docs/provisioning.md.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import DeviceKind

from bellhop_edge.clock import now_ms
from bellhop_edge.core.model import Connectivity, Device, Room
from bellhop_edge.core.ops import PutDevice, PutRoom, WriteOp
from bellhop_edge.errors import (
    AlreadyProvisionedError,
    InvalidDeviceError,
    ReloadFailedError,
    UnknownDeviceError,
)
from bellhop_edge.files import write_atomic
from bellhop_edge.provisioning import broker_files as broker
from bellhop_edge.provisioning.accounts import AccountFile, StoredAccount, check_device_id
from bellhop_edge.provisioning.records import (
    BrokerEndpoint,
    BrokerFiles,
    Bundle,
    DeviceCredentials,
    NewDevice,
)
from bellhop_edge.provisioning.reload import Reload
from bellhop_edge.store import EdgeStore

__all__ = ["Provisioner"]

# Room ids travel in bundles and the API: 1-64 characters, no spaces or control characters.
_ROOM_ID: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")


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
        self._accounts = AccountFile(accounts_path, hotel_id)
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
            check_device_id(new.device_id)
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
                accounts[account.username] = StoredAccount(account, now)
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
            accounts[stored.account.username] = StoredAccount(account, now_ms())
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
            accounts[account.username] = StoredAccount(account, now_ms())
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

    def _device_account(self, accounts: dict[str, StoredAccount], device_id: str) -> StoredAccount:
        for stored in accounts.values():
            if stored.account.device_id == device_id:
                return stored
        raise UnknownDeviceError(f"device {device_id!r} has no broker account")

    def _apply(self, accounts: dict[str, StoredAccount], bundles: Sequence[Bundle] = ()) -> None:
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
