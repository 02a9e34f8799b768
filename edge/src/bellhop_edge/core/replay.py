"""Replay detection: a device message the broker sends again is stored once.

Two ways the same message reaches the gateway twice:

- The broker redelivers a QoS 1 message whose PUBACK it never received: the
  gateway committed it and then crashed, or its connection dropped, before
  the PUBACK went out. PUBACKs go out in arrival order, so these are a tail
  of the messages committed last, at most the broker's in-flight window
  (1,000 in the generated config). Each QoS 1 message's key is committed as a
  *receipt* in the same transaction as its writes (`ops.PutMessage`), and the
  newest `tail` receipts are loaded at start-up: whatever the broker can
  redeliver is known, after any crash, exactly.
- A device sends a message again because it missed the broker's PUBACK. Such
  a copy arrives soon after the first, so the newest `per_device` keys of
  each device are remembered too (in memory).

Only QoS 1 deliveries are screened: a device that publishes at QoS 0 never
sends a message again, nor does the broker, so QoS 0 ingest (the bulk of
telemetry) pays nothing here.

A key is a 64-bit digest of what makes a message that message: telemetry
by device, time and `seq`; an event by device, time, kind and data; a state
report by device, time and values. Status messages and acks are idempotent
and have no key. Two different messages collide with a probability of about
n^2 / 2^65 for n remembered keys: for 10,000 keys, 3 in 10^12.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Final

from bellhop_devices.messages import DeviceMessage, Event, StateReport, Telemetry

__all__ = ["PER_DEVICE", "TAIL", "ReplayMemory", "replay_key"]

TAIL: Final = 10_000
PER_DEVICE: Final = 32


def replay_key(message: DeviceMessage) -> int | None:
    """The message's identity as a signed 64-bit integer; None if it has none."""
    if isinstance(message, Telemetry):
        text = f"t\x00{message.device_id}\x00{message.ts}\x00{message.seq}"
    elif isinstance(message, Event):
        data = json.dumps(dict(message.data), sort_keys=True, separators=(",", ":"))
        text = f"e\x00{message.device_id}\x00{message.ts}\x00{message.kind.value}\x00{data}"
    elif isinstance(message, StateReport):
        values = json.dumps(dict(message.values), sort_keys=True, separators=(",", ":"))
        text = f"s\x00{message.device_id}\x00{message.ts}\x00{values}"
    else:
        return None
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class ReplayMemory:
    """The keys of the messages seen last: globally (`tail`) and per device."""

    def __init__(self, *, tail: int = TAIL, per_device: int = PER_DEVICE) -> None:
        if tail < 1 or per_device < 1:
            raise ValueError("tail and per_device must be positive")
        self._tail_size = tail
        self._per_device_size = per_device
        # Insertion-ordered dicts used as sets: trimmed in bulk, O(1) per key on average.
        self._tail: dict[int, None] = {}
        self._devices: dict[str, dict[int, None]] = {}

    def restore(self, keys: Iterable[int]) -> None:
        """The receipts committed last, oldest first (from the store at start-up)."""
        for key in keys:
            self._tail[key] = None
        self._trim_tail()

    def seen(self, device_id: str, key: int) -> bool:
        if key in self._tail:
            return True
        recent = self._devices.get(device_id)
        return recent is not None and key in recent

    def remember(self, device_id: str, key: int) -> None:
        """A QoS 1 message was accepted; its receipt is committed with its writes."""
        self._tail[key] = None
        if len(self._tail) > 2 * self._tail_size:
            self._trim_tail()
        recent = self._devices.get(device_id)
        if recent is None:
            recent = self._devices[device_id] = {}
        recent[key] = None
        if len(recent) > 2 * self._per_device_size:
            self._devices[device_id] = dict.fromkeys(list(recent)[-self._per_device_size :])

    def forget(self, device_id: str, key: int) -> None:
        """Its writes failed: the broker sends it again, and then it must be stored."""
        self._tail.pop(key, None)
        recent = self._devices.get(device_id)
        if recent is not None:
            recent.pop(key, None)

    def drop_device(self, device_id: str) -> None:
        self._devices.pop(device_id, None)

    def _trim_tail(self) -> None:
        if len(self._tail) > self._tail_size:
            self._tail = dict.fromkeys(list(self._tail)[-self._tail_size :])
