"""Live events for remote managers: what changed in a hotel, as it is applied.

live = LiveEvents.from_config(config)      # in-process, or Redis for several nodes
await live.start()
await live.publish(hotel_id, [LiveEvent("state", {...}, room_id="101")])
await live.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bellhop_cloud.config import RelayConfig

__all__ = ["LiveEvent", "LiveEvents", "plan_events"]


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str  # state, alert, command, gateway, desired
    data: dict[str, Any] = field(default_factory=dict)
    room_id: str | None = None


class LiveEvents:
    """Placeholder: the event log and its readers are being built."""

    @classmethod
    def from_config(cls, config: RelayConfig) -> LiveEvents:
        return cls()

    async def start(self) -> None:
        return None

    async def publish(self, hotel_id: str, events: Sequence[LiveEvent]) -> None:
        return None

    async def close(self) -> None:
        return None


def plan_events(plan: Any) -> list[LiveEvent]:
    """The live events of a batch the relay just applied (a `bridge.plan.Plan`)."""
    return []
