"""The gateway's record of the hotel's broker accounts, and the device-id rule.

`accounts.json` holds one row per account: username, `$7$` hash, role,
device and when the password was issued. It is the record; Mosquitto's
password file and ACL are rendered from it, because they cannot say which
device an account belongs to or when it was issued. Hashes only, mode 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import Channel

from bellhop_edge.errors import AccountFileError, InvalidDeviceError
from bellhop_edge.files import write_atomic
from bellhop_edge.provisioning import broker_files as broker

__all__ = ["AccountFile", "StoredAccount", "check_device_id"]

_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """One row of the accounts file: the account and when its password was issued."""

    account: broker.BrokerAccount
    issued_at: int  # Unix ms


class AccountFile:
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
        # A sibling file: `save` replaces accounts.json, which would drop a lock held on it.
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def load(self) -> dict[str, StoredAccount]:
        """The accounts by username; none when the file does not exist yet."""
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AccountFileError(f"{self.path}: cannot read the broker accounts: {exc}") from None
        try:
            if doc["format"] != _FORMAT:
                raise AccountFileError(f"{self.path}: unknown format {doc['format']!r}")
            if doc["hotel_id"] != self.hotel_id:
                raise AccountFileError(
                    f"{self.path} holds hotel {doc['hotel_id']!r}, not {self.hotel_id!r}"
                )
            out: dict[str, StoredAccount] = {}
            for row in doc["accounts"]:
                account = broker.BrokerAccount(
                    username=str(row["username"]),
                    password_hash=str(row["password_hash"]),
                    role=broker.AccountRole(row["role"]),
                    hotel_id=self.hotel_id,
                    device_id=row.get("device_id"),
                )
                out[account.username] = StoredAccount(account, int(row["issued_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise AccountFileError(f"{self.path}: invalid broker accounts: {exc!r}") from None
        return out

    def save(self, accounts: dict[str, StoredAccount]) -> None:
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
        doc = {"format": _FORMAT, "hotel_id": self.hotel_id, "accounts": rows}
        write_atomic(self.path, json.dumps(doc, indent=1) + "\n", mode=0o600)


def check_device_id(device_id: str) -> None:
    """The protocol's id rule, and no `gateway-` prefix: that names the gateway's account.

    A device's id is its MQTT username, so the rule also keeps it safe in the
    password file and the ACL.
    """
    try:
        codec.topic("h", device_id, Channel.STATUS)
    except DecodeError as exc:
        raise InvalidDeviceError(exc.detail) from None
    if device_id.startswith("gateway-"):
        raise InvalidDeviceError(f"device id {device_id!r}: 'gateway-' names the gateway's account")
