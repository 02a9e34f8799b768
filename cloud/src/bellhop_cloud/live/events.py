"""What a live event is, its id, its JSON body, and the events of an applied batch.

Ids are `<ms>-<n>` (Redis stream ids have the same form): a time in
milliseconds and a counter within it. They only rise within one
organisation's log, and compare as the pair of numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import orjson

__all__ = [
    "DEVICE_ROOMED",
    "Entry",
    "EventId",
    "LiveEvent",
    "body",
    "format_id",
    "iso",
    "parse_id",
    "plan_events",
]

EventId = tuple[int, int]
# Each part fits 64 bits, as Redis stream ids do.
ID_PATTERN: Final = r"^[0-9]{1,19}-[0-9]{1,19}$"
ID_MAX_LENGTH: Final = 39
_ID: Final = re.compile(ID_PATTERN)
# Kinds about one device: without a room of their own they take the device's room.
DEVICE_ROOMED: Final = frozenset({"state", "desired", "command"})


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One change to tell watchers of a hotel about.

    `room_id` None means the whole hotel, except for the kinds in
    `DEVICE_ROOMED` whose `data` names a `device_id`: `LiveEvents.publish`
    gives those the device's current room.
    """

    kind: str  # state, alert, command, desired, device, gateway
    data: dict[str, Any] = field(default_factory=dict)
    room_id: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A live event as a log holds it: its id, where it belongs, its JSON body."""

    key: EventId
    hotel_id: str
    room_id: str | None
    kind: str
    payload: str

    @property
    def id(self) -> str:
        return format_id(self.key)


def parse_id(text: str) -> EventId | None:
    """The id `<ms>-<n>`, or None for anything else."""
    if _ID.fullmatch(text) is None:
        return None
    ms, _, n = text.partition("-")
    return (int(ms), int(n))


def format_id(key: EventId) -> str:
    return f"{key[0]}-{key[1]}"


def iso(ms: int | None) -> str | None:
    """An ISO 8601 UTC time with milliseconds, as the API writes times."""
    if ms is None:
        return None
    at = datetime.fromtimestamp(ms / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def body(hotel_id: str, event: LiveEvent, room_id: str | None, at_ms: int) -> str:
    """The JSON every watcher receives for `event` (the SSE `data`)."""
    envelope = {
        "kind": event.kind,
        "hotel_id": hotel_id,
        "room_id": room_id,
        "at": iso(at_ms),
        "data": event.data,
    }
    return orjson.dumps(envelope).decode()


def _alert(alert: dict[str, Any]) -> LiveEvent:
    data = {k: v for k, v in alert.items() if k != "hotel_id"}
    for name in ("raised_at", "acknowledged_at", "cleared_at"):
        data[name] = iso(data.get(name))
    return LiveEvent("alert", data, room_id=alert.get("room_id"))


def plan_events(plan: Any) -> list[LiveEvent]:
    """The live events of a batch the relay just applied (a `bridge.plan.Plan`).

    Registry changes of devices, each device's latest reported state, desired
    state, alert changes and command results; never telemetry points (too
    many: history is read through the REST API) and never device events.
    """
    rooms: dict[str, str | None] = {d: v.get("room_id") for d, v in plan.devices.items()}
    events: list[LiveEvent] = []
    for device_id, registry in plan.devices.items():
        data = {"device_id": device_id, **registry, "removed": False}
        data["last_seen"] = iso(data.pop("last_seen_ms", None))
        data.pop("room_id", None)
        events.append(LiveEvent("device", data, room_id=registry.get("room_id")))
    for device_id in sorted(plan.removed):
        events.append(LiveEvent("device", {"device_id": device_id, "removed": True}))
    for device_id, (values, updated_ms) in plan.states.items():
        data = {"device_id": device_id, "values": values, "updated_at": iso(updated_ms)}
        events.append(LiveEvent("state", data, room_id=rooms.get(device_id)))
    for device_id, desired in plan.desired.items():
        data = {
            "device_id": device_id,
            "version": desired["version"],
            "values": desired["values"],
            "updated_at": iso(desired["updated_at"]),
            "updated_by": desired["updated_by"],
            # How a change made through the cloud merged with what was set on site.
            "change_id": desired["change_id"],
            "outcomes": desired["outcomes"] or [],
        }
        events.append(LiveEvent("desired", data, room_id=rooms.get(device_id)))
    events.extend(_alert(alert) for alert in plan.alerts.values())
    for command in plan.commands.values():
        data = {k: v for k, v in command.items() if k != "hotel_id"}
        data["completed_at"] = iso(data.get("completed_at"))
        events.append(LiveEvent("command", data, room_id=rooms.get(command["device_id"])))
    return events


def gateway_event(gateway_id: str, reason: str) -> LiveEvent:
    """A gateway's bridge opened (`reason` "open") or closed, and why."""
    up = reason == "open"
    return LiveEvent("gateway", {"gateway_id": gateway_id, "connected": up, "reason": reason})
