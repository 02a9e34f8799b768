"""Every error the edge gateway raises on purpose, in one tree.

    EdgeError
     ├── ConfigError                  invalid or missing configuration
     │    └── PkiError                a CA or certificate that cannot be used
     ├── AuthError                    missing, malformed or rejected credentials
     │    └── PermissionDenied        valid credentials, not allowed to do this
     ├── NotFound                     no such room, device, alert or command
     │    ├── UnknownAlertError       no open or recently cleared alert has this id
     │    └── UnknownDeviceError      no broker account for this device
     ├── Conflict                     a version or idempotency-id clash
     │    ├── AlertClearedError       the alert was cleared: too late to acknowledge
     │    ├── AlreadyProvisionedError the device already has credentials
     │    └── CommandIdReusedError    a command id already used for another command
     ├── InvalidRequest               a request that can never succeed as sent
     │    ├── InvalidAckError         an outbox ack beyond the last sequence appended
     │    └── InvalidDeviceError      a device, room or setting that cannot be provisioned
     ├── Unavailable                  the broker is down or the gateway is overloaded
     │    ├── WriterClosedError       the store writer is closed (or died)
     │    ├── WriterFullError         too many writes waiting for the disk
     │    └── ReloadFailedError       broker files written, the broker not reloaded
     ├── DeadlineExceeded             the device did not answer in time
     ├── StoreError                   the database itself
     │    ├── SchemaVersionError      written by a newer gateway; left untouched
     │    └── WriteFailedError        one write could not be committed
     └── AccountFileError             the broker accounts file is unreadable

The gRPC API maps each branch to one status code in a single interceptor
(`bellhop_edge.api.interceptor`); nothing else decides status codes. An error
may sit on two branches (a full writer is both a store error and
"unavailable"); the interceptor takes the first match of its own table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "AccountFileError",
    "AlertClearedError",
    "AlreadyProvisionedError",
    "AuthError",
    "CommandIdReusedError",
    "ConfigError",
    "Conflict",
    "DeadlineExceeded",
    "EdgeError",
    "InvalidAckError",
    "InvalidDeviceError",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "PkiError",
    "ReloadFailedError",
    "SchemaVersionError",
    "StoreError",
    "Unavailable",
    "UnknownAlertError",
    "UnknownDeviceError",
    "WriteFailedError",
    "WriterClosedError",
    "WriterFullError",
]


class EdgeError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(EdgeError):
    """Invalid or missing configuration; the message names each bad field."""


class PkiError(ConfigError):
    """A CA or certificate that cannot be used."""


class AuthError(EdgeError):
    """Missing, malformed or rejected credentials."""


class PermissionDenied(AuthError):
    """Valid credentials, not allowed to do this."""


class NotFound(EdgeError):
    """No such room, device, alert or command."""


class Conflict(EdgeError):
    """A version or idempotency-id clash."""


class InvalidRequest(EdgeError):
    """A request that can never succeed as sent."""


class Unavailable(EdgeError):
    """The broker is down or the gateway is overloaded; try again."""


class DeadlineExceeded(EdgeError):
    """The device did not answer in time."""


# -- alerts ---------------------------------------------------------------------------
class UnknownAlertError(NotFound):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"no open alert {alert_id!r}")
        self.alert_id = alert_id


class AlertClearedError(Conflict):
    def __init__(self, alert_id: str) -> None:
        super().__init__(f"alert {alert_id!r} was already cleared")
        self.alert_id = alert_id


# -- commands -------------------------------------------------------------------------
class CommandIdReusedError(Conflict):
    """A command id already used for another command (another device, name or
    parameters): refused before anything runs; the id's earlier command stands. Its own
    class so that callers tell it by type (the bridge flags it to the relay), never by
    its words, which are for people."""

    def __init__(self, command_id: str, first_name: str, first_device_id: str) -> None:
        super().__init__(
            f"command id {command_id!r} was already used for {first_name!r} on {first_device_id!r}"
        )
        self.command_id = command_id


# -- the store ------------------------------------------------------------------------
class StoreError(EdgeError):
    """The gateway's database."""


class SchemaVersionError(StoreError):
    """The database was written by a newer gateway; refusing to touch it."""


class WriteFailedError(StoreError):
    """An op could not be committed; the rest of its batch was."""


class WriterClosedError(StoreError, Unavailable):
    """The writer is closed (or died); nothing more can be submitted."""


class WriterFullError(StoreError, Unavailable):
    """`submit` found `max_pending` ops not yet committed; use `put` to wait instead."""


class InvalidAckError(StoreError, InvalidRequest):
    """An outbox ack beyond the last sequence ever appended."""


# -- provisioning ---------------------------------------------------------------------
class InvalidDeviceError(InvalidRequest):
    """A device id, room id, kind or setting that can never be provisioned."""


class UnknownDeviceError(NotFound):
    """No broker account for this device."""


class AlreadyProvisionedError(Conflict):
    """The device already has credentials: rotate them instead."""


class AccountFileError(EdgeError):
    """The accounts file is unreadable or belongs to another hotel; left untouched."""


class ReloadFailedError(Unavailable):
    """The files were written but the broker could not be told to reload them.

    `bundles` holds the `provisioning.Bundle` records the operation issued:
    the passwords exist nowhere else, so the caller must still hand them out.
    (Typed loosely so that this module imports nothing of the gateway's.)
    """

    def __init__(self, message: str, bundles: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.bundles = tuple(bundles)
