"""Decoding: what a device published, per channel, and a command on the device side."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bellhop_devices.codec.fields import (
    check_extras,
    check_name,
    check_text,
    int_field,
    metrics,
    require,
    scalars,
    str_field,
)
from bellhop_devices.codec.limits import DEFAULT_MAX_BYTES, MAX_SEQ, MAX_TS, WILL_PAYLOAD
from bellhop_devices.codec.parse import load
from bellhop_devices.codec.topics import parse_topic
from bellhop_devices.errors import DecodeError, RejectReason
from bellhop_devices.messages import (
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
)

_COMMAND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_FIRMWARE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
_EVENT_KINDS: Final = {k.value: k for k in EventKind}
_DEVICE_KINDS: Final = {k.value: k for k in DeviceKind}
_ACK_STATUSES: Final = {s.value: s for s in AckStatus}

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
        obj = load(payload, max_bytes)
        ts = int_field(obj, "ts", MAX_TS)
        seq = int_field(obj, "seq", MAX_SEQ)
        values = metrics(require(obj, "metrics"))
        if len(obj) != 3 + ("v" in obj):
            check_extras(obj, _TELEMETRY_KEYS)
        return Telemetry(device_id, ts, seq, values)
    if channel is Channel.STATE:
        obj = load(payload, max_bytes)
        state = StateReport(
            device_id, int_field(obj, "ts", MAX_TS), scalars(require(obj, "values"), "values")
        )
        check_extras(obj, _STATE_KEYS)
        return state
    if channel is Channel.EVENT:
        return _decode_event(device_id, load(payload, max_bytes))
    if channel is Channel.ACK:
        return _decode_ack(device_id, load(payload, max_bytes))
    if channel is Channel.STATUS:
        if payload == WILL_PAYLOAD:
            return Status(device_id, online=False)
        return _decode_status(device_id, load(payload, max_bytes))
    raise DecodeError(
        RejectReason.WRONG_DIRECTION, f"{channel} is published by the edge, not by devices"
    )


def _decode_event(device_id: str, obj: dict[str, Any]) -> Event:
    ts = int_field(obj, "ts", MAX_TS)
    raw_kind = str_field(obj, "kind")
    kind = _EVENT_KINDS.get(raw_kind)
    if kind is None:
        raise DecodeError(RejectReason.INVALID_VALUE, f"unknown event kind {raw_kind[:40]!r}")
    data = scalars(obj["data"], "data") if "data" in obj else {}
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
    check_extras(obj, _EVENT_KEYS)
    return Event(device_id, ts, kind, data)


# The one data field each event kind must carry (ranges come from METRIC_RANGES).
_EVENT_DATA: Final[Mapping[EventKind, tuple[str, type]]] = {
    EventKind.DOOR: ("open", bool),
    EventKind.GAS: ("gas_ppm", float),
    EventKind.BATTERY: ("battery", float),
}


def _decode_status(device_id: str, obj: dict[str, Any]) -> Status:
    state = str_field(obj, "state")
    if state not in ("online", "offline"):
        raise DecodeError(
            RejectReason.INVALID_VALUE, f"state {state[:40]!r} is neither online nor offline"
        )
    online = state == "online"
    ts = int_field(obj, "ts", MAX_TS)
    kind: DeviceKind | None = None
    firmware: str | None = None
    if online or "kind" in obj:
        raw_kind = str_field(obj, "kind")
        kind = _DEVICE_KINDS.get(raw_kind)
        if kind is None:
            raise DecodeError(RejectReason.INVALID_VALUE, f"unknown device kind {raw_kind[:40]!r}")
    if online or "firmware" in obj:
        firmware = str_field(obj, "firmware")
        if _FIRMWARE.fullmatch(firmware) is None:
            raise DecodeError(
                RejectReason.INVALID_VALUE,
                f"firmware {firmware[:40]!r} is not 1-32 of A-Z a-z 0-9 . _ + -",
            )
    check_extras(obj, _STATUS_KEYS)
    return Status(device_id, online, ts, kind, firmware)


def _command_id(obj: dict[str, Any]) -> str:
    value = str_field(obj, "id")
    if _COMMAND_ID.fullmatch(value) is None:
        raise DecodeError(
            RejectReason.BAD_ID,
            f"command id {value[:80]!r} is not 1-64 of A-Z a-z 0-9 . _ : - starting alphanumeric",
        )
    return value


def _decode_ack(device_id: str, obj: dict[str, Any]) -> Ack:
    command_id = _command_id(obj)
    raw_status = str_field(obj, "status")
    status = _ACK_STATUSES.get(raw_status)
    if status is None:
        raise DecodeError(RejectReason.INVALID_VALUE, f"unknown ack status {raw_status[:40]!r}")
    result: dict[str, JsonValue] | None = None
    error: str | None = None
    if status is AckStatus.OK:
        if "error" in obj:
            raise DecodeError(RejectReason.INVALID_VALUE, "an ok ack carries no error")
        if "result" in obj:
            result = scalars(obj["result"], "result")
    else:
        if "result" in obj:
            raise DecodeError(RejectReason.INVALID_VALUE, f"an {status} ack carries no result")
        if status is AckStatus.ERROR or "error" in obj:
            error = check_text(str_field(obj, "error"), "error")
    check_extras(obj, _ACK_KEYS)
    return Ack(device_id, command_id, status, result, error)


def decode_command(payload: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Command:
    """Device side: decode a `cmd` (or broadcast) payload; raises DecodeError."""
    obj = load(payload, max_bytes)
    command_id = _command_id(obj)
    name = str_field(obj, "name")
    check_name(name, "command")
    params = scalars(require(obj, "params"), "params", ranged=False)
    expires_at = int_field(obj, "expires_at", MAX_TS)
    check_extras(obj, _COMMAND_KEYS)
    return Command(command_id, name, params, expires_at)
