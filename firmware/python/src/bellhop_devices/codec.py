"""Sans-I/O codec of device protocol v1 (docs/device-protocol.md).

Topics and JSON payloads in, typed messages out (and back). No sockets, no
event loop, standard library only. The edge runs every MQTT message through
`decode`, so the telemetry path is kept short: a cached topic lookup, one
JSON parse and a loop over the metrics.

The shared vectors in firmware/vectors/ are the executable form of this
module's contract; the firmware's C++ core passes the same files.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import orjson

from bellhop_devices.errors import DecodeError, RejectReason
from bellhop_devices.messages import (
    PROTOCOL_VERSION,
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceKind,
    DeviceMessage,
    Event,
    EventKind,
    JsonValue,
    StateReport,
    Status,
    Telemetry,
    Topic,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEVICE_CHANNELS",
    "EXPIRED_ERROR",
    "MAX_DEPTH",
    "MAX_ENTRIES",
    "MAX_SEQ",
    "MAX_TEXT_LEN",
    "MAX_TS",
    "METRIC_LIMIT",
    "METRIC_RANGES",
    "WILL_PAYLOAD",
    "CommandGuard",
    "DecodeError",
    "RejectReason",
    "Verdict",
    "VerdictKind",
    "broadcast_topic",
    "decode",
    "decode_command",
    "encode",
    "encode_command",
    "parse_topic",
    "subscriptions",
    "topic",
]

DEFAULT_MAX_BYTES: Final = 4096
MAX_ENTRIES: Final = 32
MAX_DEPTH: Final = 4
MAX_TEXT_LEN: Final = 128
MAX_TS: Final = 2**53 - 1
MAX_SEQ: Final = 2**32 - 1
METRIC_LIMIT: Final = 1e9
WILL_PAYLOAD: Final = b"offline"

METRIC_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "temperature": (-40, 125),
    "setpoint": (5, 35),
    "humidity": (0, 100),
    "luminosity": (0, 200_000),
    "brightness": (0, 100),
    "battery": (0, 100),
    "gas_ppm": (0, 100_000),
    "power_w": (0, 10_000),
    "rssi": (-127, 0),
}
"""Bounds of the metrics (and same-named state values) the protocol knows.
Any other numeric metric must lie within +/- METRIC_LIMIT."""

DEVICE_CHANNELS: Final = (
    Channel.TELEMETRY,
    Channel.STATE,
    Channel.EVENT,
    Channel.ACK,
    Channel.STATUS,
)
"""Channels a device publishes on (and the edge subscribes to)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_COMMAND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_FIRMWARE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
_CHANNELS: Final = {c.value: c for c in Channel}
_EVENT_KINDS: Final = {k.value: k for k in EventKind}
_DEVICE_KINDS: Final = {k.value: k for k in DeviceKind}
_ACK_STATUSES: Final = {s.value: s for s in AckStatus}
_CACHE_LIMIT: Final = 16_384


# --------------------------------------------------------------------- topics


def _check_id(value: str, what: str) -> str:
    if _ID.fullmatch(value) is None:
        raise DecodeError(
            RejectReason.BAD_ID,
            f"{what} {value[:80]!r} is not 1-64 of A-Z a-z 0-9 _ - starting alphanumeric",
        )
    return value


def topic(hotel_id: str, device_id: str, channel: Channel) -> str:
    """`hotel/{hotel_id}/device/{device_id}/{channel}`; raises DecodeError(BAD_ID)."""
    _check_id(hotel_id, "hotel id")
    _check_id(device_id, "device id")
    return f"hotel/{hotel_id}/device/{device_id}/{channel.value}"


def broadcast_topic(hotel_id: str) -> str:
    """Where the edge publishes a command for every device of the hotel."""
    _check_id(hotel_id, "hotel id")
    return f"hotel/{hotel_id}/broadcast/cmd"


def subscriptions(hotel_id: str) -> list[str]:
    """Topic filters the gateway subscribes to: every device channel but `cmd`.

    One filter per channel rather than `+/+`, so the gateway never receives
    its own commands back.
    """
    _check_id(hotel_id, "hotel id")
    return [f"hotel/{hotel_id}/device/+/{c.value}" for c in DEVICE_CHANNELS]


# Valid topics seen before; a hotel has a few thousand, so this stays small.
# Only successful parses are cached (a flood of garbage topics cannot grow it).
_topic_cache: dict[str, Topic] = {}


def parse_topic(topic: str, *, hotel_id: str) -> Topic:
    """Parse a device topic of hotel `hotel_id`; raises DecodeError.

    Checked in this order: shape (BAD_TOPIC), hotel (FOREIGN_HOTEL), device
    id (BAD_ID), channel (UNKNOWN_CHANNEL).
    """
    cached = _topic_cache.get(topic)
    if cached is not None and cached.hotel_id == hotel_id:
        return cached
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "hotel" or parts[2] != "device":
        raise DecodeError(
            RejectReason.BAD_TOPIC,
            f"topic {topic[:120]!r} is not hotel/{{hotel_id}}/device/{{device_id}}/{{channel}}",
        )
    if parts[1] != hotel_id:
        raise DecodeError(
            RejectReason.FOREIGN_HOTEL,
            f"topic {topic[:120]!r} is outside hotel {hotel_id!r}",
        )
    device_id = _check_id(parts[3], "device id")
    channel = _CHANNELS.get(parts[4])
    if channel is None:
        raise DecodeError(RejectReason.UNKNOWN_CHANNEL, f"unknown channel {parts[4][:40]!r}")
    parsed = Topic(hotel_id, device_id, channel)
    if len(_topic_cache) >= _CACHE_LIMIT:
        _topic_cache.clear()
    _topic_cache[topic] = parsed
    return parsed


# ------------------------------------------------------------------- envelope


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


def _load(payload: bytes, max_bytes: int) -> dict[str, Any]:
    if not payload:
        raise DecodeError(RejectReason.EMPTY, "empty payload")
    if len(payload) > max_bytes:
        raise DecodeError(
            RejectReason.TOO_LARGE, f"{len(payload)} bytes exceeds the {max_bytes} limit"
        )
    obj = _fast_load(payload)
    if obj is None:
        obj = _strict_load(payload)
    if type(obj) is not dict:
        raise DecodeError(RejectReason.NOT_OBJECT, f"top level is {_json_type(obj)}, not an object")
    v = obj.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION or type(v) is not int:
        if type(v) is not int:
            raise DecodeError(RejectReason.WRONG_TYPE, f"v must be an integer, got {_json_type(v)}")
        raise DecodeError(
            RejectReason.UNSUPPORTED_VERSION, f"version {v} is not supported (only 1)"
        )
    return obj


def _fast_load(payload: bytes) -> Any:
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


def _strict_load(payload: bytes) -> Any:
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


def _json_type(value: object) -> str:
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


def _check_extras(obj: dict[str, Any], known: frozenset[str]) -> None:
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
        _check_text(value, where, limit=None)
    elif kind is dict:
        for key, item in value.items():
            _check_text(key, where, limit=None)
            _check_any(item, depth + 1, where)
    elif kind is list:
        for item in value:
            _check_any(item, depth + 1, where)


def _check_text(value: str, where: str, *, limit: int | None = MAX_TEXT_LEN) -> str:
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


# --------------------------------------------------------------------- fields


def _require(obj: dict[str, Any], key: str) -> Any:
    try:
        return obj[key]
    except KeyError:
        raise DecodeError(RejectReason.MISSING_FIELD, f"missing field {key!r}") from None


def _int_field(obj: dict[str, Any], key: str, high: int) -> int:
    value = _require(obj, key)
    if type(value) is not int:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{key} must be an integer, got {_json_type(value)}"
        )
    if not 0 <= value <= high:
        raise DecodeError(RejectReason.OUT_OF_RANGE, f"{key} {value} is outside 0..{high}")
    return value


def _str_field(obj: dict[str, Any], key: str) -> str:
    value = _require(obj, key)
    if type(value) is not str:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{key} must be a string, got {_json_type(value)}"
        )
    return value


def _check_name(name: str, where: str) -> None:
    if _NAME.fullmatch(name) is None:
        raise DecodeError(
            RejectReason.BAD_NAME,
            f"{where} name {name[:40]!r} is not 1-32 of a-z 0-9 _ starting with a letter",
        )


def _check_number(name: str, value: Any, where: str, *, ranged: bool = True) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{where} {name} must be a number, got {_json_type(value)}"
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


# Names that passed _check_name; avoids a regex per metric on the hot path.
_good_names: set[str] = set()


def _metrics(value: Any) -> dict[str, float]:
    if type(value) is not dict:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"metrics must be an object, got {_json_type(value)}"
        )
    if len(value) > MAX_ENTRIES:
        raise DecodeError(
            RejectReason.TOO_MANY_ENTRIES, f"{len(value)} metrics (max {MAX_ENTRIES})"
        )
    good = _good_names
    ranges = METRIC_RANGES
    for name, number in value.items():
        if name not in good:
            _check_name(name, "metric")
            if len(good) < _CACHE_LIMIT:
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
        _check_number(name, number, "metric")
    return value


def _scalars(value: Any, where: str, *, ranged: bool = True) -> dict[str, JsonValue]:
    """A flat object of name -> boolean | number | string | null.

    `ranged`: known names must lie in their METRIC_RANGES. Command params are
    not ranged here: the device judges them and answers `bad_params`.
    """
    if type(value) is not dict:
        raise DecodeError(
            RejectReason.WRONG_TYPE, f"{where} must be an object, got {_json_type(value)}"
        )
    if len(value) > MAX_ENTRIES:
        raise DecodeError(
            RejectReason.TOO_MANY_ENTRIES, f"{where} has {len(value)} entries (max {MAX_ENTRIES})"
        )
    for name, item in value.items():
        _check_name(name, where)
        kind = type(item)
        if kind is bool or item is None:
            continue
        if kind is str:
            _check_text(item, f"{where}.{name}")
        elif kind is int or kind is float:
            _check_number(name, item, where, ranged=ranged)
        else:
            raise DecodeError(
                RejectReason.WRONG_TYPE,
                f"{where}.{name} must be a boolean, number, string or null, not {_json_type(item)}",
            )
    return value


# ------------------------------------------------------------------- decoding

_TELEMETRY_KEYS: Final = frozenset({"v", "ts", "seq", "metrics"})
_STATE_KEYS: Final = frozenset({"v", "ts", "values"})
_EVENT_KEYS: Final = frozenset({"v", "ts", "kind", "data"})
_STATUS_KEYS: Final = frozenset({"v", "state", "ts", "kind", "firmware"})
_ACK_KEYS: Final = frozenset({"v", "id", "status", "result", "error"})
_COMMAND_KEYS: Final = frozenset({"v", "id", "name", "params", "expires_at"})


def decode(
    topic: str, payload: bytes, *, hotel_id: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> DeviceMessage:
    """Decode what a device published; raises DecodeError (with a RejectReason).

    On `status` the bare payload `offline` is the Last Will. Commands (`cmd`)
    flow the other way and are rejected here with WRONG_DIRECTION.
    """
    parsed = parse_topic(topic, hotel_id=hotel_id)
    channel = parsed.channel
    device_id = parsed.device_id
    if channel is Channel.TELEMETRY:
        obj = _load(payload, max_bytes)
        ts = _int_field(obj, "ts", MAX_TS)
        seq = _int_field(obj, "seq", MAX_SEQ)
        metrics = _metrics(_require(obj, "metrics"))
        if len(obj) != 3 + ("v" in obj):
            _check_extras(obj, _TELEMETRY_KEYS)
        return Telemetry(device_id, ts, seq, metrics)
    if channel is Channel.STATE:
        obj = _load(payload, max_bytes)
        state = StateReport(
            device_id, _int_field(obj, "ts", MAX_TS), _scalars(_require(obj, "values"), "values")
        )
        _check_extras(obj, _STATE_KEYS)
        return state
    if channel is Channel.EVENT:
        return _decode_event(device_id, _load(payload, max_bytes))
    if channel is Channel.ACK:
        return _decode_ack(device_id, _load(payload, max_bytes))
    if channel is Channel.STATUS:
        if payload == WILL_PAYLOAD:
            return Status(device_id, online=False)
        return _decode_status(device_id, _load(payload, max_bytes))
    raise DecodeError(
        RejectReason.WRONG_DIRECTION, f"{channel} is published by the edge, not by devices"
    )


def _decode_event(device_id: str, obj: dict[str, Any]) -> Event:
    ts = _int_field(obj, "ts", MAX_TS)
    raw_kind = _str_field(obj, "kind")
    kind = _EVENT_KINDS.get(raw_kind)
    if kind is None:
        raise DecodeError(RejectReason.INVALID_VALUE, f"unknown event kind {raw_kind[:40]!r}")
    data = _scalars(obj["data"], "data") if "data" in obj else {}
    required = _EVENT_DATA.get(kind)
    if required is not None:
        key, expected = required
        if key not in data:
            raise DecodeError(RejectReason.MISSING_FIELD, f"{kind} event needs data.{key}")
        value = data[key]
        if expected is bool and type(value) is not bool:
            raise DecodeError(RejectReason.WRONG_TYPE, f"data.{key} must be a boolean")
        if expected is float and (type(value) is bool or value is None or type(value) is str):
            raise DecodeError(RejectReason.WRONG_TYPE, f"data.{key} must be a number")
    _check_extras(obj, _EVENT_KEYS)
    return Event(device_id, ts, kind, data)


# The one data field each event kind must carry (ranges come from METRIC_RANGES).
_EVENT_DATA: Final[Mapping[EventKind, tuple[str, type]]] = {
    EventKind.DOOR: ("open", bool),
    EventKind.GAS: ("gas_ppm", float),
    EventKind.BATTERY: ("battery", float),
}


def _decode_status(device_id: str, obj: dict[str, Any]) -> Status:
    state = _str_field(obj, "state")
    if state not in ("online", "offline"):
        raise DecodeError(
            RejectReason.INVALID_VALUE, f"state {state[:40]!r} is neither online nor offline"
        )
    online = state == "online"
    ts = _int_field(obj, "ts", MAX_TS)
    kind: DeviceKind | None = None
    firmware: str | None = None
    if online or "kind" in obj:
        raw_kind = _str_field(obj, "kind")
        kind = _DEVICE_KINDS.get(raw_kind)
        if kind is None:
            raise DecodeError(RejectReason.INVALID_VALUE, f"unknown device kind {raw_kind[:40]!r}")
    if online or "firmware" in obj:
        firmware = _str_field(obj, "firmware")
        if _FIRMWARE.fullmatch(firmware) is None:
            raise DecodeError(
                RejectReason.INVALID_VALUE,
                f"firmware {firmware[:40]!r} is not 1-32 of A-Z a-z 0-9 . _ + -",
            )
    _check_extras(obj, _STATUS_KEYS)
    return Status(device_id, online, ts, kind, firmware)


def _command_id(obj: dict[str, Any]) -> str:
    value = _str_field(obj, "id")
    if _COMMAND_ID.fullmatch(value) is None:
        raise DecodeError(
            RejectReason.BAD_ID,
            f"command id {value[:80]!r} is not 1-64 of A-Z a-z 0-9 . _ : - starting alphanumeric",
        )
    return value


def _decode_ack(device_id: str, obj: dict[str, Any]) -> Ack:
    command_id = _command_id(obj)
    raw_status = _str_field(obj, "status")
    status = _ACK_STATUSES.get(raw_status)
    if status is None:
        raise DecodeError(RejectReason.INVALID_VALUE, f"unknown ack status {raw_status[:40]!r}")
    result: dict[str, JsonValue] | None = None
    error: str | None = None
    if status is AckStatus.OK:
        if "error" in obj:
            raise DecodeError(RejectReason.INVALID_VALUE, "an ok ack carries no error")
        if "result" in obj:
            result = _scalars(obj["result"], "result")
    else:
        if "result" in obj:
            raise DecodeError(RejectReason.INVALID_VALUE, f"an {status} ack carries no result")
        if status is AckStatus.ERROR or "error" in obj:
            error = _check_text(_str_field(obj, "error"), "error")
    _check_extras(obj, _ACK_KEYS)
    return Ack(device_id, command_id, status, result, error)


def decode_command(payload: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Command:
    """Device side: decode a `cmd` (or broadcast) payload; raises DecodeError."""
    obj = _load(payload, max_bytes)
    command_id = _command_id(obj)
    name = _str_field(obj, "name")
    _check_name(name, "command")
    params = _scalars(_require(obj, "params"), "params", ranged=False)
    expires_at = _int_field(obj, "expires_at", MAX_TS)
    _check_extras(obj, _COMMAND_KEYS)
    return Command(command_id, name, params, expires_at)


# ------------------------------------------------------------------- encoding

_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _canonical(values: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    # Integral floats print as integers (21.0 -> 21), as small JSON writers do.
    return {k: int(x) if type(x) is float and x.is_integer() else x for k, x in values.items()}


def _dump(obj: dict[str, Any]) -> bytes:
    return _ENCODER.encode(obj).encode()


def encode(msg: DeviceMessage) -> bytes:
    """Canonical v1 payload of a device message (device side).

    Trusts its input (decode is the validator); the output is byte-for-byte
    what firmware/vectors/encode.json specifies.
    """
    if isinstance(msg, Telemetry):
        return _dump({"v": 1, "ts": msg.ts, "seq": msg.seq, "metrics": _canonical(msg.metrics)})
    if isinstance(msg, StateReport):
        return _dump({"v": 1, "ts": msg.ts, "values": _canonical(msg.values)})
    if isinstance(msg, Event):
        return _dump({"v": 1, "ts": msg.ts, "kind": msg.kind.value, "data": _canonical(msg.data)})
    if isinstance(msg, Status):
        if not msg.online and msg.ts is None:
            return WILL_PAYLOAD
        body: dict[str, Any] = {"v": 1, "state": "online" if msg.online else "offline"}
        body["ts"] = msg.ts
        if msg.kind is not None:
            body["kind"] = msg.kind.value
        if msg.firmware is not None:
            body["firmware"] = msg.firmware
        return _dump(body)
    body = {"v": 1, "id": msg.id, "status": msg.status.value}
    if msg.result is not None:
        body["result"] = _canonical(msg.result)
    if msg.error is not None:
        body["error"] = msg.error
    return _dump(body)


def encode_command(cmd: Command) -> bytes:
    """Canonical v1 payload of a command (edge side)."""
    return _dump(
        {
            "v": 1,
            "id": cmd.id,
            "name": cmd.name,
            "params": _canonical(cmd.params),
            "expires_at": cmd.expires_at,
        }
    )


# -------------------------------------------------------------- command guard


class VerdictKind(StrEnum):
    EXECUTE = "execute"
    # Seen before: resend `ack` (None while the first delivery still runs).
    DUPLICATE = "duplicate"
    # Not seen before and past its expires_at: send `ack`, do nothing else.
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    ack: Ack | None = None


EXPIRED_ERROR: Final = "command expired"


class CommandGuard:
    """Device-side at-most-once bookkeeping for commands (sans-I/O).

    Remembers the last `capacity` command ids with the ack each got, least
    recently used first out. A command runs only if its id is not remembered
    and `now_ms < expires_at`. The firmware core mirrors this class; the
    vectors in firmware/vectors/commands.json pin its behaviour.
    """

    __slots__ = ("_capacity", "_device_id", "_seen")

    def __init__(self, device_id: str, *, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._device_id = device_id
        self._capacity = capacity
        self._seen: OrderedDict[str, Ack | None] = OrderedDict()

    def check(self, cmd: Command, now_ms: int) -> Verdict:
        """What to do with `cmd` arriving at `now_ms`. EXECUTE reserves the id;
        call `record` with the ack once the command has run."""
        seen = self._seen
        if cmd.id in seen:
            seen.move_to_end(cmd.id)
            return Verdict(VerdictKind.DUPLICATE, seen[cmd.id])
        if now_ms >= cmd.expires_at:
            ack = Ack(self._device_id, cmd.id, AckStatus.EXPIRED, error=EXPIRED_ERROR)
            self._remember(cmd.id, ack)
            return Verdict(VerdictKind.EXPIRED, ack)
        self._remember(cmd.id, None)
        return Verdict(VerdictKind.EXECUTE)

    def record(self, ack: Ack) -> None:
        """Remember the ack sent for an executed command, for its duplicates."""
        self._remember(ack.id, ack)

    def __len__(self) -> int:
        return len(self._seen)

    def _remember(self, command_id: str, ack: Ack | None) -> None:
        seen = self._seen
        seen[command_id] = ack
        seen.move_to_end(command_id)
        while len(seen) > self._capacity:
            seen.popitem(last=False)
