"""JSON payloads to Python values: the strict parser, the fast orjson path
that provably agrees with it, and the envelope check (size, object, `v`)."""

from __future__ import annotations

import json
from typing import Any, Final

import orjson

from bellhop_devices.codec.fields import json_type
from bellhop_devices.codec.limits import MAX_DEPTH
from bellhop_devices.errors import DecodeError, RejectReason
from bellhop_devices.messages import PROTOCOL_VERSION


class _DuplicateKeyError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return obj


class _NonFiniteError(ValueError):
    pass


def _constant(name: str) -> Any:
    raise _NonFiniteError(name)


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


def load(payload: bytes, max_bytes: int) -> dict[str, Any]:
    """The payload's top-level object, of a version this codec speaks; raises DecodeError."""
    if not payload:
        raise DecodeError(RejectReason.EMPTY, "empty payload")
    if len(payload) > max_bytes:
        raise DecodeError(
            RejectReason.TOO_LARGE, f"{len(payload)} bytes exceeds the {max_bytes} limit"
        )
    obj = fast_load(payload)
    if obj is None:
        obj = strict_load(payload)
    if type(obj) is not dict:
        raise DecodeError(RejectReason.NOT_OBJECT, f"top level is {json_type(obj)}, not an object")
    v = obj.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION or type(v) is not int:
        if type(v) is not int:
            raise DecodeError(RejectReason.WRONG_TYPE, f"v must be an integer, got {json_type(v)}")
        raise DecodeError(
            RejectReason.UNSUPPORTED_VERSION, f"version {v} is not supported (only 1)"
        )
    return obj


def fast_load(payload: bytes) -> Any:
    """orjson's parse when it provably equals the strict one, else None.

    orjson is five times faster than `json` but keeps the last of duplicate
    keys instead of rejecting them. Every key of a JSON text comes with one
    colon outside strings, so when the text holds exactly as many colons as
    the parsed value has keys there can be no duplicate (nor a colon inside
    a string). Anything else, including whatever orjson refuses (NaN, huge
    integers, bad UTF-8), goes to the strict parser, which says exactly why.
    """
    try:
        obj = orjson.loads(payload)
        keys = _count_keys(obj) if type(obj) is dict or type(obj) is list else 0
    except (orjson.JSONDecodeError, RecursionError, _Ambiguous):
        return None
    return obj if payload.count(b":") == keys else None


class _Ambiguous(Exception):
    pass


# orjson reads an integer beyond 64 bits as a float, `json` as an int.
_INT_LOW: Final = -(2**63)
_INT_HIGH: Final = 2**64


def _count_keys(value: Any) -> int:
    """Keys in all objects of `value`; raises _Ambiguous where orjson may differ."""
    if type(value) is dict:
        count, items = len(value), value.values()
    else:
        count, items = 0, value
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            count += _count_keys(item)
        elif kind is float and not _INT_LOW <= item < _INT_HIGH:
            raise _Ambiguous
    return count


def strict_load(payload: bytes) -> Any:
    """Parse with `json`, rejecting duplicate keys and NaN/Infinity; raises DecodeError."""
    try:
        text = payload.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(RejectReason.NOT_UTF8, f"not UTF-8 at byte {exc.start}") from None
    try:
        return _DECODER.decode(text)
    except _DuplicateKeyError as exc:
        raise DecodeError(
            RejectReason.DUPLICATE_KEY, f"key {str(exc)[:40]!r} appears twice"
        ) from None
    except _NonFiniteError as exc:
        raise DecodeError(RejectReason.NON_FINITE, f"{exc} is not a finite number") from None
    except RecursionError:
        raise DecodeError(RejectReason.TOO_DEEP, f"nested deeper than {MAX_DEPTH}") from None
    except ValueError as exc:
        raise DecodeError(RejectReason.MALFORMED_JSON, str(exc)[:160]) from None
