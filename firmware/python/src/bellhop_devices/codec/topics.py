"""Topics: building, parsing (cached), the edge's subscriptions, id rules."""

from __future__ import annotations

import re
from typing import Final

from bellhop_devices.codec.limits import CACHE_LIMIT
from bellhop_devices.errors import DecodeError, RejectReason
from bellhop_devices.messages import Channel, Topic

DEVICE_CHANNELS: Final = (
    Channel.TELEMETRY,
    Channel.STATE,
    Channel.EVENT,
    Channel.ACK,
    Channel.STATUS,
)
"""Channels a device publishes on (and the edge subscribes to)."""

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_CHANNELS: Final = {c.value: c for c in Channel}


def check_id(value: str, what: str) -> str:
    """`value` if it is a valid hotel or device id; raises DecodeError(BAD_ID)."""
    if _ID.fullmatch(value) is None:
        raise DecodeError(
            RejectReason.BAD_ID,
            f"{what} {value[:80]!r} is not 1-64 of A-Z a-z 0-9 _ - starting alphanumeric",
        )
    return value


def topic(hotel_id: str, device_id: str, channel: Channel) -> str:
    """`hotel/{hotel_id}/device/{device_id}/{channel}`; raises DecodeError(BAD_ID)."""
    check_id(hotel_id, "hotel id")
    check_id(device_id, "device id")
    return f"hotel/{hotel_id}/device/{device_id}/{channel.value}"


def broadcast_topic(hotel_id: str) -> str:
    """Where the edge publishes a command for every device of the hotel."""
    check_id(hotel_id, "hotel id")
    return f"hotel/{hotel_id}/broadcast/cmd"


def subscriptions(hotel_id: str) -> list[str]:
    """Topic filters the gateway subscribes to: every device channel but `cmd`.

    One filter per channel rather than `+/+`, so the gateway never receives
    its own commands back.
    """
    check_id(hotel_id, "hotel id")
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
    device_id = check_id(parts[3], "device id")
    channel = _CHANNELS.get(parts[4])
    if channel is None:
        raise DecodeError(RejectReason.UNKNOWN_CHANNEL, f"unknown channel {parts[4][:40]!r}")
    parsed = Topic(hotel_id, device_id, channel)
    if len(_topic_cache) >= CACHE_LIMIT:
        _topic_cache.clear()
    _topic_cache[topic] = parsed
    return parsed
