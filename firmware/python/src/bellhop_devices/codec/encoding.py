"""Encoding: the canonical v1 payload of a device message or a command."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from bellhop_devices.codec.limits import WILL_PAYLOAD
from bellhop_devices.messages import (
    Command,
    DeviceMessage,
    Event,
    JsonValue,
    StateReport,
    Status,
    Telemetry,
)

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
