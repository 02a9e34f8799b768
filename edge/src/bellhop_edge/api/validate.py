"""The LAN API's boundary: each request field checked before the gateway sees it.

Every function takes a protobuf value and the field's name and returns the
plain value, or raises `InvalidRequest` whose message starts with the field
("ttl: must be between 0.001 and 3600 s, got 1e+14 s"), which the
interceptor sends as INVALID_ARGUMENT. Limits:

- ids: a device id by the device protocol's rule; room ids 1-64 characters
  without spaces or control characters; alert ids 1-64 of letters, digits,
  `-` and `_`; command and fleet ids 1-64 of letters, digits, `.`, `_` and
  `-` starting with a letter or digit (a fleet id at most 40, as each
  device's id is derived from it). No `:` (which the device protocol allows):
  ids with a `:` are the relay's own items ("ack:<alert id>", "desired:<id>"),
  and a command id must never equal one (docs/remote-control.md). A command
  looked up (`existing_command_id`) may still hold one: ids made before the
  rule are found.
- names (metrics, commands): the protocol's name rule.
- text (a note): at most 500 characters, no control characters but tab
  and newline.
- values (desired state): a flat object of at most 32 booleans, finite
  numbers and short strings; what each device kind accepts is checked by
  the hotel core.
- durations and timestamps: within the given range; page sizes: 0 means the
  default, a negative one is refused, a larger one than the maximum is
  served as the maximum (as paging APIs usually do).
- enum lists: every value must be a known one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

from bellhop_devices.codec import MAX_ENTRIES, MAX_TEXT_LEN, METRIC_LIMIT
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2

from bellhop_edge.errors import InvalidRequest

__all__ = [
    "alert_id",
    "change_id",
    "command_id",
    "device_id",
    "device_ids",
    "duration",
    "enums",
    "existing_command_id",
    "flat_values",
    "limit",
    "name",
    "note",
    "room_id",
    "room_ids",
    "timestamp_ms",
]

T = TypeVar("T")

_DEVICE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ROOM_ID: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")
_ALERT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_COMMAND_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_COMMAND_RULE: Final = "1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit (no :)"
# What ids were before `:` was kept for the relay's items: a lookup still finds them.
_ANY_COMMAND_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
# The relay's desired changes ("desired:<id>"), which are not command ids.
_CHANGE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,79}")
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
NOTE_MAX: Final = 500
LIST_MAX: Final = 2000
# google.protobuf.Timestamp's own range: 0001-01-01 to 9999-12-31.
_TS_MIN_S: Final = -62_135_596_800
_TS_MAX_S: Final = 253_402_300_799


def _shown(value: str) -> str:
    return repr(value[:40] + ("..." if len(value) > 40 else ""))


def _matching(value: str, field: str, pattern: re.Pattern[str], rule: str) -> str:
    if pattern.fullmatch(value) is None:
        raise InvalidRequest(f"{field}: {_shown(value)} is not {rule}")
    return value


def device_id(value: str, field: str = "device_id") -> str:
    if not value:
        raise InvalidRequest(f"{field}: required")
    return _matching(
        value, field, _DEVICE_ID, "1-64 of A-Z a-z 0-9 _ - starting with a letter or digit"
    )


def room_id(value: str, field: str = "room_id") -> str | None:
    """Empty means "every room" where the field is optional."""
    if not value:
        return None
    return _matching(value, field, _ROOM_ID, "1-64 characters without spaces or control ones")


def alert_id(value: str, field: str = "alert_id") -> str:
    if not value:
        raise InvalidRequest(f"{field}: required")
    return _matching(value, field, _ALERT_ID, "an alert id")


def command_id(value: str, field: str = "command_id", *, max_len: int = 64) -> str | None:
    """Empty means "the gateway picks one"."""
    if not value:
        return None
    if len(value) > max_len:
        raise InvalidRequest(f"{field}: at most {max_len} characters, got {len(value)}")
    return _matching(value, field, _COMMAND_ID, _COMMAND_RULE)


def existing_command_id(value: str, field: str = "command_id") -> str:
    """The id of a command to look up: required; an id of before the no-`:` rule is
    found too."""
    if not value:
        raise InvalidRequest(f"{field}: required")
    return _matching(value, field, _ANY_COMMAND_ID, "a command id")


def change_id(value: str, field: str = "change_id") -> str:
    """The id of a desired change from the relay ("desired:<id>"): required."""
    if not value:
        raise InvalidRequest(f"{field}: required")
    return _matching(value, field, _CHANGE_ID, "1-80 of A-Z a-z 0-9 . _ : -")


def name(value: str, field: str) -> str:
    if not value:
        raise InvalidRequest(f"{field}: required")
    return _matching(value, field, _NAME, "1-32 of a-z 0-9 _ starting with a letter")


def note(value: str, field: str = "note") -> str:
    if len(value) > NOTE_MAX:
        raise InvalidRequest(f"{field}: at most {NOTE_MAX} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise InvalidRequest(f"{field}: control characters are not allowed")
    return value


def _listed(values: Sequence[T], field: str) -> Sequence[T]:
    if len(values) > LIST_MAX:
        raise InvalidRequest(f"{field}: at most {LIST_MAX} entries, got {len(values)}")
    return values


def device_ids(values: Sequence[str], field: str) -> list[str]:
    return [device_id(v, f"{field}[{i}]") for i, v in enumerate(_listed(values, field))]


def room_ids(values: Sequence[str], field: str) -> list[str]:
    out = []
    for i, value in enumerate(_listed(values, field)):
        checked = room_id(value, f"{field}[{i}]")
        if checked is None:
            raise InvalidRequest(f"{field}[{i}]: empty")
        out.append(checked)
    return out


def enums(values: Iterable[int], known: Mapping[Any, T], field: str) -> list[T]:
    out = []
    for i, value in enumerate(values):
        if value not in known:
            raise InvalidRequest(f"{field}[{i}]: {value} is not a known value")
        out.append(known[value])
    return out


def duration(
    message: duration_pb2.Duration, field: str, *, present: bool, default: float, high: float
) -> float:
    """Seconds; `default` when the field is absent, else within (0, `high`]."""
    if not present:
        return default
    seconds = message.seconds + message.nanos / 1e9
    if not 0 < seconds <= high:
        raise InvalidRequest(
            f"{field}: must be more than 0 and at most {high:g} s, got {seconds:g} s"
        )
    return seconds


def timestamp_ms(
    message: timestamp_pb2.Timestamp, field: str, *, present: bool, default: int
) -> int:
    if not present:
        return default
    if not _TS_MIN_S <= message.seconds <= _TS_MAX_S or not 0 <= message.nanos < 1_000_000_000:
        raise InvalidRequest(f"{field}: not a valid timestamp")
    return message.seconds * 1000 + message.nanos // 1_000_000


def limit(value: int, field: str, *, default: int, maximum: int) -> int:
    if value < 0:
        raise InvalidRequest(f"{field}: must not be negative, got {value}")
    return min(value or default, maximum)


def flat_values(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A flat object of booleans, finite numbers, short strings (and nulls).

    Read field by field from the Struct (a JSON conversion would choke on an
    infinity before anything could check it). JSON has one number type: a
    whole number comes back as an int, as a device would read it.
    """
    if len(message.fields) > MAX_ENTRIES:
        raise InvalidRequest(f"{field}: at most {MAX_ENTRIES} entries, got {len(message.fields)}")
    out: dict[str, Any] = {}
    for key, value in message.fields.items():
        name(key, f"{field} key")
        where = f"{field}.{key}"
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            number = value.number_value
            if not math.isfinite(number) or abs(number) > METRIC_LIMIT:
                raise InvalidRequest(f"{where}: must be a finite number within +/-{METRIC_LIMIT:g}")
            out[key] = int(number) if number.is_integer() else number
        elif kind == "string_value":
            text = value.string_value
            if len(text) > MAX_TEXT_LEN:
                raise InvalidRequest(f"{where}: at most {MAX_TEXT_LEN} characters")
            if _CONTROL.search(text):
                raise InvalidRequest(f"{where}: control characters are not allowed")
            out[key] = text
        elif kind == "bool_value":
            out[key] = value.bool_value
        elif kind == "null_value":
            out[key] = None
        else:
            raise InvalidRequest(
                f"{where}: must be a boolean, number, string or null, not a list or object"
            )
    return out
