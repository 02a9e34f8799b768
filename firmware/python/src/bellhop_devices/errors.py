"""Exceptions of bellhop_devices.

DevicesError
├── DecodeError (also ValueError)   a topic or payload broke protocol v1; carries a RejectReason
└── ProvisioningError               a simulator provisioning file is unusable
"""

from __future__ import annotations

from enum import StrEnum


class RejectReason(StrEnum):
    """Why a topic or payload was rejected.

    The values are stable: they are counter labels on the edge, reject codes in
    the shared test vectors and the firmware core. Add new ones; never rename.
    """

    # Topic
    BAD_TOPIC = "bad_topic"
    FOREIGN_HOTEL = "foreign_hotel"
    UNKNOWN_CHANNEL = "unknown_channel"
    WRONG_DIRECTION = "wrong_direction"
    BAD_ID = "bad_id"
    # Envelope
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    MALFORMED_JSON = "malformed_json"
    DUPLICATE_KEY = "duplicate_key"
    TOO_DEEP = "too_deep"
    NOT_OBJECT = "not_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    # Fields
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    NON_FINITE = "non_finite"
    OUT_OF_RANGE = "out_of_range"
    BAD_NAME = "bad_name"
    TOO_LONG = "too_long"
    TOO_MANY_ENTRIES = "too_many_entries"
    INVALID_VALUE = "invalid_value"


class DevicesError(Exception):
    """Root of every error raised by bellhop_devices."""


class DecodeError(DevicesError, ValueError):
    """A topic or payload that protocol v1 rejects.

    `reason` is the stable code to count by; `detail` says what exactly was
    wrong, in words fit for one log line.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProvisioningError(DevicesError):
    """The simulator's provisioning file is missing, malformed or inconsistent."""
