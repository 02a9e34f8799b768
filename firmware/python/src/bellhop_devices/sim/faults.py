"""Misbehaviour a simulated device can be told to show, for tests and demos."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Faults", "garbage_payload"]


@dataclass(frozen=True, slots=True)
class Faults:
    """All off by default. Probabilities are per message, in 0..1."""

    # Run the command but never send its ack (a retry then gets the ack).
    drop_ack_probability: float = 0.0
    # Wait this long before sending each ack.
    ack_delay_s: float = 0.0
    # Publish a payload the codec rejects instead of a telemetry message.
    garbage_probability: float = 0.0
    # Cut the connection without DISCONNECT this often (the broker sends the Will).
    disconnect_every_s: float | None = None
    # Stay connected but publish nothing at all (no Will: the edge must notice
    # from the silence).
    silent: bool = False

    def __post_init__(self) -> None:
        for name in ("drop_ack_probability", "garbage_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.ack_delay_s < 0:
            raise ValueError("ack_delay_s must not be negative")
        if self.disconnect_every_s is not None and self.disconnect_every_s <= 0:
            raise ValueError("disconnect_every_s must be positive")


def garbage_payload(rng: random.Random, valid: bytes) -> bytes:
    """A payload that protocol v1 rejects, in one of the ways devices get it wrong."""
    choice = rng.randrange(6)
    if choice == 0:
        return b"\xff" + rng.randbytes(rng.randrange(1, 40))  # not UTF-8
    if choice == 1:
        return valid[: max(1, len(valid) // 2)]  # truncated JSON
    if choice == 2:
        return valid.replace(b'"v":1', b'"v":9', 1)  # unsupported version
    if choice == 3:
        return b'{"ts":1,"seq":1,"metrics":{"temperature":NaN}}'
    if choice == 4:
        return b'{"ts":1,"seq":1,"metrics":{"temperature":true}}'
    return b"[" * 10 + b"]" * 10  # not an object
