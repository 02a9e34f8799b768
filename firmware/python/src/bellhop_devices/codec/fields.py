"""Field validation of decoded JSON: required fields, integers, strings,
names, numbers in their ranges, metric and scalar objects, and the bounds on
unknown fields. Each check raises DecodeError with the matching RejectReason."""

from __future__ import annotations

import math
import re
from typing import Any

from bellhop_devices.codec.limits import (
    CACHE_LIMIT,
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_TEXT_LEN,
    METRIC_LIMIT,
    METRIC_RANGES,
)
from bellhop_devices.errors import DecodeError, RejectReason
from bellhop_devices.messages import JsonValue

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")


def json_type(value: object) -> str:
    """What `value` is in JSON words, for error details."""
    if value is None:
        return "null"
    if type(value) is bool:
        return "a boolean"
    if type(value) is int or type(value) is float:
        return "a number"
    if type(value) is str:
        return "a string"
    if type(value) is list:
        return "an array"
    return "an object"


def check_extras(obj: dict[str, Any], known: frozenset[str]) -> None:
    """Unknown fields are ignored (forward compatibility) but still bounded."""
    for key, value in obj.items():
        if key not in known:
            _check_any(value, 2, key)


def _check_any(value: Any, depth: int, where: str) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError(RejectReason.TOO_DEEP, f"{where} is nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if kind is float:
        if not math.isfinite(value):
            raise DecodeError(RejectReason.NON_FINITE, f"{where} is not a finite number")
    elif kind is str:
        check_text(value, where, limit=None)
    elif kind is dict:
        for key, item in value.items():
            check_text(key, where, limit=None)
            _check_any(item, depth + 1, where)
    elif kind is list:
        for item in value:
            _check_any(item, depth + 1, where)


def check_text(value: str, where: str, *, limit: int | None = MAX_TEXT_LEN) -> str:
    """`value` if it is at most `limit` characters and encodable as UTF-8."""
    if limit is not None and len(value) > limit:
        raise DecodeError(
            RejectReason.TOO_LONG, f"{where} is {len(value)} characters (max {limit})"
        )
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise DecodeError(
                RejectReason.NOT_UTF8, f"{where} holds an unpaired surrogate escape"
            ) from None
    return value


def require(obj: dict[str, Any], key: str) -> Any:
    """`obj[key]`; raises DecodeError(MISSING_FIELD)."""
    try:
        return obj[key]
    except KeyError:
        raise DecodeError(RejectReason.MISSING_FIELD, f"missing field {key!r}") from None


def int_field(obj: dict[str, Any], key: str, high: int) -> int:
    """The required integer `obj[key]`, within 0..high."""
    value = require(obj, key)
    if type(value) is not int:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{key} must be an integer, got {json_type(value)}"
        )
    if not 0 <= value <= high:
        raise DecodeError(RejectReason.OUT_OF_RANGE, f"{key} {value} is outside 0..{high}")
    return value


def str_field(obj: dict[str, Any], key: str) -> str:
    """The required string `obj[key]`."""
    value = require(obj, key)
    if type(value) is not str:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{key} must be a string, got {json_type(value)}"
        )
    return value


def check_name(name: str, where: str) -> None:
    """A metric, value or command name: 1-32 of a-z 0-9 _ starting with a letter."""
    if _NAME.fullmatch(name) is None:
        raise DecodeError(
            RejectReason.BAD_NAME,
            f"{where} name {name[:40]!r} is not 1-32 of a-z 0-9 _ starting with a letter",
        )


def check_number(name: str, value: Any, where: str, *, ranged: bool = True) -> None:
    """A finite number within METRIC_RANGES[name] (when `ranged`) or +/-METRIC_LIMIT."""
    kind = type(value)
    if kind is not float and kind is not int:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{where} {name} must be a number, got {json_type(value)}"
        )
    if kind is float and not math.isfinite(value):
        raise DecodeError(RejectReason.NON_FINITE, f"{where} {name} is not a finite number")
    bounds = METRIC_RANGES.get(name) if ranged else None
    if bounds is None:
        if not -METRIC_LIMIT <= value <= METRIC_LIMIT:
            raise DecodeError(
                RejectReason.OUT_OF_RANGE, f"{where} {name} {value} is outside +/-{METRIC_LIMIT:g}"
            )
    elif not bounds[0] <= value <= bounds[1]:
        raise DecodeError(
            RejectReason.OUT_OF_RANGE,
            f"{where} {name} {value} is outside {bounds[0]}..{bounds[1]}",
        )


# Names that passed check_name; avoids a regex per metric on the hot path.
_good_names: set[str] = set()


def metrics(value: Any) -> dict[str, float]:
    """Telemetry `metrics`: at most MAX_ENTRIES named numbers, each in range."""
    if type(value) is not dict:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"metrics must be an object, got {json_type(value)}"
        )
    if len(value) > MAX_ENTRIES:
        raise DecodeError(
            RejectReason.TOO_MANY_ENTRIES, f"{len(value)} metrics (max {MAX_ENTRIES})"
        )
    good = _good_names
    ranges = METRIC_RANGES
    for name, number in value.items():
        if name not in good:
            check_name(name, "metric")
            if len(good) < CACHE_LIMIT:
                good.add(name)
        kind = type(number)
        # Fast path: a float or int within bounds (NaN fails every comparison).
        if kind is float or kind is int:
            bounds = ranges.get(name)
            if bounds is None:
                if -METRIC_LIMIT <= number <= METRIC_LIMIT:
                    continue
            elif bounds[0] <= number <= bounds[1]:
                continue
        check_number(name, number, "metric")
    return value


def scalars(value: Any, where: str, *, ranged: bool = True) -> dict[str, JsonValue]:
    """A flat object of name -> boolean | number | string | null.

    `ranged`: known names must lie in their METRIC_RANGES. Command params are
    not ranged here: the device judges them and answers `bad_params`.
    """
    if type(value) is not dict:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{where} must be an object, got {json_type(value)}"
        )
    if len(value) > MAX_ENTRIES:
        raise DecodeError(
            RejectReason.TOO_MANY_ENTRIES, f"{where} has {len(value)} entries (max {MAX_ENTRIES})"
        )
    for name, item in value.items():
        check_name(name, where)
        kind = type(item)
        if kind is bool or item is None:
            continue
        if kind is str:
            check_text(item, f"{where}.{name}")
        elif kind is int or kind is float:
            check_number(name, item, where, ranged=ranged)
        else:
            raise DecodeError(
                RejectReason.WRONG_TYPE,
                f"{where}.{name} must be a boolean, number, string or null, not {json_type(item)}",
            )
    return value
