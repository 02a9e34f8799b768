"""Command ids both ends agree on: a fleet's per-device ids, so retries on any path dedup."""

from __future__ import annotations

import hashlib

__all__ = ["fleet_command_id"]


def fleet_command_id(fleet_id: str, device_id: str) -> str:
    """The id of one device's share of a fleet command: the same for the same fleet and
    device whether the fleet was sent on the hotel LAN or through the cloud, so a fleet
    retried on either path executes once per device."""
    digest = hashlib.blake2b(device_id.encode(), digest_size=8).hexdigest()
    return f"{fleet_id[:40]}.{digest}"
