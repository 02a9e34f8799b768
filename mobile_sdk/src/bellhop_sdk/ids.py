"""The ids the SDK makes for the calls it sends: both servers accept them as they are."""

from __future__ import annotations

import uuid

__all__ = ["new_command_id", "new_fleet_id"]


def new_command_id() -> str:
    """A command id both servers accept (letters, digits, `-`; at most 64)."""
    return f"cmd-{uuid.uuid4().hex}"


def new_fleet_id() -> str:
    """A fleet id both servers accept (at most 40 characters)."""
    return f"fleet-{uuid.uuid4().hex[:24]}"
