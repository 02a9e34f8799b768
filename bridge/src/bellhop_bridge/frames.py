"""Frames on the wire: one protobuf `Frame` per WebSocket binary message.

    frame = decode(data)            # ProtocolError(BAD_FRAME | TOO_LARGE) on garbage
    data = encode(frame)
    data = encode_batch([entry.data for entry in entries])

`encode_batch` writes an `EventBatch` frame from events that are already
serialized (the edge's outbox keeps them so), without decoding them again:

    Frame    field 5 (events), length-delimited:  0x2a <varint len> <EventBatch>
    EventBatch field 1 (events), repeated:        0x0a <varint len> <OutboxEvent> ...

Limits are checked here, once, for both ends: a frame is at most
`MAX_FRAME_BYTES`, a batch at most `MAX_BATCH_EVENTS` events, and every
string a peer sends (ids, codes, messages) is short and free of control
characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp

from bellhop_bridge.errors import CloseCode, ProtocolError

__all__ = [
    "CONTROL",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_COUNT",
    "MAX_FRAME_BYTES",
    "NONCE_BYTES",
    "PROTOCOL_VERSION",
    "check_count",
    "check_text",
    "decode",
    "encode",
    "encode_batch",
    "event_sizes",
    "millis",
    "proof_message",
]

PROTOCOL_VERSION: Final = 1
MAX_FRAME_BYTES: Final = 1 << 20
MAX_BATCH_EVENTS: Final = 1000
# What a batch's serialized events may add up to: each costs at most 4 bytes of
# framing (a tag and a length of up to 3 bytes), and the frame its tag and length.
MAX_BATCH_BYTES: Final = MAX_FRAME_BYTES - 8 - 4 * MAX_BATCH_EVENTS
NONCE_BYTES: Final = 32
MAX_TEXT: Final = 200
# What the gateway signs: a context, its id and the relay's nonce (docs/bridge.md).
_PROOF_CONTEXT: Final = b"bellhop-bridge-v1\x00"
CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FRAME_EVENTS_TAG: Final = b"\x2a"
_BATCH_EVENT_TAG: Final = b"\x0a"


def encode(frame: bridge_pb2.Frame) -> bytes:
    return frame.SerializeToString()


def decode(data: bytes) -> bridge_pb2.Frame:
    """One frame from a peer; `ProtocolError` for anything but a valid, bounded frame."""
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(CloseCode.TOO_LARGE, f"a frame of {len(data)} bytes")
    frame = bridge_pb2.Frame()
    try:
        frame.ParseFromString(data)
    except DecodeError:
        raise ProtocolError(CloseCode.BAD_FRAME, "not a bridge frame") from None
    if frame.WhichOneof("body") is None:
        raise ProtocolError(CloseCode.BAD_FRAME, "an empty frame")
    if frame.HasField("events") and len(frame.events.events) > MAX_BATCH_EVENTS:
        raise ProtocolError(CloseCode.BAD_FRAME, f"more than {MAX_BATCH_EVENTS} events in a batch")
    return frame


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_batch(events: Iterable[bytes]) -> bytes:
    """An `EventBatch` frame from serialized `OutboxEvent`s, byte for byte."""
    batch = b"".join(_BATCH_EVENT_TAG + _varint(len(e)) + e for e in events)
    return _FRAME_EVENTS_TAG + _varint(len(batch)) + batch


def _raw_frame() -> type[Message]:
    """A `Frame` read as far as its batch's events, each kept as the bytes it came as:
    `message RawFrame { RawBatch events = 5; }  message RawBatch { repeated bytes events
    = 1; }`, at `Frame`'s and `EventBatch`'s own field numbers."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="bellhop_bridge/raw.proto", package="raw")
    batch = file.message_type.add(name="RawBatch")
    batch.field.add(
        name="events",
        number=bridge_pb2.EventBatch.DESCRIPTOR.fields_by_name["events"].number,
        type=field.TYPE_BYTES,
        label=field.LABEL_REPEATED,
    )
    frame = file.message_type.add(name="RawFrame")
    frame.field.add(
        name="events",
        number=bridge_pb2.Frame.DESCRIPTOR.fields_by_name["events"].number,
        type=field.TYPE_MESSAGE,
        label=field.LABEL_OPTIONAL,
        type_name=".raw.RawBatch",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("raw.RawFrame"))


_RawFrame: Final = _raw_frame()


def event_sizes(data: bytes) -> list[int]:
    """The size of each event of a batch frame (`decode(data)` has taken it) as it came
    on the wire: what the gateway counted against its window, read without serializing
    each event again. Their order and number are those of `decode(data).events.events`
    for any frame a gateway sends; the caller checks the number."""
    raw: Any = _RawFrame.FromString(data)
    return list(map(len, raw.events.events))


def proof_message(gateway_id: str, nonce: bytes) -> bytes:
    """What the gateway signs with its enrolment key to answer a challenge."""
    return _PROOF_CONTEXT + gateway_id.encode() + b"\x00" + nonce


# Sequences and counts are uint64 on the wire but kept as signed 64-bit
# integers by both ends' databases: anything above is refused as it arrives.
MAX_COUNT: Final = 2**63 - 1


def check_count(value: int, field: str) -> int:
    """A sequence or count from a peer that both ends' databases can hold."""
    if value > MAX_COUNT:
        raise ProtocolError(CloseCode.BAD_FRAME, f"{field} is past 2^63-1")
    return value


def millis(stamp: Timestamp, field: str) -> int:
    """A time from a peer, as Unix milliseconds; a time outside years 1-9999 is refused."""
    try:
        return int(stamp.ToMilliseconds())
    except (ValueError, OverflowError):
        raise ProtocolError(CloseCode.BAD_FRAME, f"{field} is not a valid time") from None


def check_text(value: str, field: str, *, max_len: int = MAX_TEXT, required: bool = True) -> str:
    """A short string from a peer, without control characters."""
    if required and not value:
        raise ProtocolError(CloseCode.BAD_FRAME, f"{field} is empty")
    if len(value) > max_len:
        raise ProtocolError(CloseCode.BAD_FRAME, f"{field} is longer than {max_len}")
    if CONTROL.search(value):
        raise ProtocolError(CloseCode.BAD_FRAME, f"{field} holds control characters")
    return value
