"""Sans-I/O codec of device protocol v1 (docs/device-protocol.md).

Topics and JSON payloads in, typed messages out (and back). No sockets, no
event loop. The edge runs every MQTT message through `decode`, so the
telemetry path is kept short: a cached topic lookup, one JSON parse and a
loop over the metrics.

This package's namespace is the API; its modules are the implementation:

    limits    the protocol's bounds and the Last Will payload
    topics    topic building and parsing, subscriptions, id rules
    parse     strict JSON loading, the fast path that agrees with it, the envelope
    fields    validation of fields, names, numbers, metrics and scalar objects
    decoding  decode (per channel) and decode_command
    encoding  encode and encode_command
    guard     CommandGuard and its verdicts

The shared vectors in firmware/vectors/ are the executable form of this
package's contract; the firmware's C++ core passes the same files.
"""

from __future__ import annotations

from bellhop_devices.codec.decoding import decode, decode_command
from bellhop_devices.codec.encoding import encode, encode_command
from bellhop_devices.codec.guard import EXPIRED_ERROR, CommandGuard, Verdict, VerdictKind
from bellhop_devices.codec.limits import (
    DEFAULT_MAX_BYTES,
    MAX_DEPTH,
    MAX_ENTRIES,
    MAX_SEQ,
    MAX_TEXT_LEN,
    MAX_TS,
    METRIC_LIMIT,
    METRIC_RANGES,
    WILL_PAYLOAD,
)
from bellhop_devices.codec.topics import (
    DEVICE_CHANNELS,
    broadcast_topic,
    parse_topic,
    subscriptions,
    topic,
)
from bellhop_devices.errors import DecodeError, RejectReason

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
