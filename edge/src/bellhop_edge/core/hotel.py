"""The hotel as the gateway sees it, in memory: a sans-I/O core.

`Hotel` is fed decoded device messages and clock ticks and answers with the
changes they cause (state, telemetry, events, connectivity). It never
touches a socket or a database: the gateway's driver persists the changes
through the store writer, evaluates alert rules on them and fans them out
to live watchers. Reads of current state are served from here, not SQLite.
Whether a message was seen before is `replay`'s business, asked by `ingest`.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

from bellhop_bridge.desired import FieldIntent, RemoteIntent, local_set, merge
from bellhop_devices.kinds import check_desired
from bellhop_devices.messages import (
    Ack,
    DeviceKind,
    DeviceMessage,
    Event,
    StateReport,
    Status,
    Telemetry,
)

from bellhop_edge.core.model import (
    Connectivity,
    DesiredState,
    Device,
    DeviceEvent,
    ReportedState,
    Room,
    TelemetryPoint,
)
from bellhop_edge.errors import Conflict, InvalidRequest, NotFound

MERGED_KEPT: Final = 64  # cloud changes remembered per device as merged (`merge_desired`)


# Changes the core reports; the driver persists and publishes them.
@dataclass(frozen=True, slots=True)
class TelemetryAccepted:
    points: tuple[TelemetryPoint, ...]


@dataclass(frozen=True, slots=True)
class StateChanged:
    state: ReportedState


@dataclass(frozen=True, slots=True)
class EventAccepted:
    event: DeviceEvent


@dataclass(frozen=True, slots=True)
class ConnectivityChanged:
    device: Device


@dataclass(frozen=True, slots=True)
class DeviceUpdated:
    """Registry facts changed (first sight of an unknown device, firmware)."""

    device: Device


@dataclass(frozen=True, slots=True)
class AckReceived:
    device_id: str
    ack: Ack


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: str
    device_id: str
    detail: str


Change = (
    TelemetryAccepted
    | StateChanged
    | EventAccepted
    | ConnectivityChanged
    | DeviceUpdated
    | AckReceived
    | Rejected
)

UNKNOWN_DEVICE = "unknown_device"
DUPLICATE = "duplicate"
FUTURE = "timestamp_in_future"
# Device clocks may run ahead a little; a day ahead is a broken clock or unit.
MAX_AHEAD_MS = 24 * 3600 * 1000


class Hotel:
    """Registry, current state and liveness of one hotel's devices."""

    def __init__(
        self,
        hotel_id: str,
        *,
        heartbeat_timeout_ms: int,
        rooms: Iterable[Room] = (),
        devices: Iterable[Device] = (),
        reported: Iterable[ReportedState] = (),
        desired: Iterable[DesiredState] = (),
    ) -> None:
        self.hotel_id = hotel_id
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.rooms: dict[str, Room] = {r.room_id: r for r in rooms}
        self.devices: dict[str, Device] = {d.device_id: d for d in devices}
        self.reported: dict[str, ReportedState] = {s.device_id: s for s in reported}
        self.desired: dict[str, DesiredState] = {s.device_id: s for s in desired}
        # last_seen lives here and is flushed to SQLite periodically, not per message.
        self.last_seen: dict[str, int] = {
            d.device_id: d.last_seen for d in self.devices.values() if d.last_seen is not None
        }
        self.latest: dict[tuple[str, str], TelemetryPoint] = {}
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        # The store's write of a desired state, given before the state takes effect here:
        # a write refused (the writer full) leaves it as it was, never changed but unsaved.
        self.keep_desired: Callable[[DesiredState], None] = lambda _state: None
        # The cloud changes merged lately, per device: one sent again after a later one
        # (a reconnect with neither answered) is not merged a second time over it.
        self._merged: dict[str, deque[str]] = {}

    # -- registry -----------------------------------------------------------
    def upsert_room(self, room: Room) -> Room:
        self.rooms[room.room_id] = room
        return room

    def register_device(self, device_id: str, room_id: str, kind: DeviceKind) -> Device:
        if room_id not in self.rooms:
            raise NotFound(f"no room {room_id!r}")
        current = self.devices.get(device_id)
        device = Device(
            device_id=device_id,
            room_id=room_id,
            kind=kind,
            registered=True,
            connectivity=current.connectivity if current else Connectivity.UNKNOWN,
            last_seen=self.last_seen.get(device_id),
            firmware=current.firmware if current else None,
        )
        self.devices[device_id] = device
        return device

    def reload_registry(self, rooms: Iterable[Room], devices: Iterable[Device]) -> list[str]:
        """Take rooms and registered devices from the store (changed by a tool).

        Live facts (connectivity, firmware, last_seen) of devices already known
        are kept. Returns the ids of devices that are no longer registered.
        """
        self.rooms = {r.room_id: r for r in rooms}
        stored = {d.device_id: d for d in devices if d.registered}
        gone = [i for i, d in self.devices.items() if d.registered and i not in stored]
        for device_id in gone:
            del self.devices[device_id]
        for device_id, entry in stored.items():
            current = self.devices.get(device_id)
            device = entry
            if current is not None:
                device = replace(
                    entry,
                    connectivity=current.connectivity,
                    firmware=current.firmware or entry.firmware,
                )
            self.devices[device_id] = device
        return gone

    def device(self, device_id: str) -> Device:
        device = self.devices.get(device_id)
        if device is None:
            raise NotFound(f"no device {device_id!r}")
        return replace(device, last_seen=self.last_seen.get(device_id, device.last_seen))

    def registered(self, device_id: str) -> Device:
        device = self.device(device_id)
        if not device.registered:
            raise NotFound(f"device {device_id!r} is not registered (seen on the broker only)")
        return device

    @property
    def registered_count(self) -> int:
        return sum(1 for d in self.devices.values() if d.registered)

    def list_devices(
        self, room_id: str | None = None, *, include_unknown: bool = False
    ) -> list[Device]:
        return [
            replace(d, last_seen=self.last_seen.get(d.device_id, d.last_seen))
            for d in sorted(self.devices.values(), key=lambda d: d.device_id)
            if (include_unknown or d.registered) and (room_id is None or d.room_id == room_id)
        ]

    def select(
        self,
        *,
        room_ids: Iterable[str] = (),
        floors: Iterable[int] = (),
        kinds: Iterable[DeviceKind] = (),
        device_ids: Iterable[str] = (),
        all_devices: bool = False,
    ) -> list[str]:
        """Registered devices matching any of the criteria (a fleet's targets)."""
        rooms, floor_set, kind_set, ids = set(room_ids), set(floors), set(kinds), set(device_ids)
        chosen = []
        for device in self.devices.values():
            if not device.registered:
                continue
            room = self.rooms.get(device.room_id or "")
            if (
                all_devices
                or device.device_id in ids
                or device.room_id in rooms
                or (room is not None and room.floor in floor_set)
                or device.kind in kind_set
            ):
                chosen.append(device.device_id)
        unknown = ids - set(self.devices)
        if unknown:
            raise NotFound(f"no such devices: {', '.join(sorted(unknown))}")
        return sorted(chosen)

    # -- desired state ------------------------------------------------------
    def set_desired(
        self,
        device_id: str,
        values: dict[str, Any],
        *,
        by: str,
        now: int,
        expected_version: int = 0,
        safety_until: int | None = None,
        safety: bool = False,
    ) -> DesiredState:
        """Staff on site set fields; with `safety`, a local safety override that stands
        against changes made through the cloud (until `safety_until`, if given)."""
        self._check_settable(device_id, values)
        current = self.desired.get(device_id)
        version = current.version if current else 0
        if expected_version and expected_version != version:
            raise Conflict(
                f"desired state of {device_id!r} is at version {version}, not {expected_version}"
            )
        before = current.intents() if current else {}
        try:
            meta = local_set(before, values, now, by, safety=safety, safety_until_ms=safety_until)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        return self._put_desired(DesiredState(device_id, version + 1, _values(meta), now, by, meta))

    def merge_desired(
        self, device_id: str, remote: RemoteIntent, *, change_id: str, now: int
    ) -> DesiredState:
        """A change made through the cloud, merged with what staff set here by the policy
        of docs/conflicts.md; the state returned carries each field's outcome."""
        current = self.desired.get(device_id)
        merged = self._merged.get(device_id, ())
        if current is not None and (current.change_id == change_id or change_id in merged):
            return current  # merged already: the relay sent it again after a reconnect
        self._check_settable(device_id, {k: v for k, v in remote.fields.items() if v is not None})
        version = current.version if current else 0
        try:
            result = merge(current.intents() if current else {}, version, remote, now)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        state = DesiredState(
            device_id,
            version + 1,
            result.values,
            now,
            remote.by,
            result.meta,
            result.outcomes,
            change_id,
        )
        self._put_desired(state)
        self._merged.setdefault(device_id, deque(maxlen=MERGED_KEPT)).append(change_id)
        return state

    def _check_settable(self, device_id: str, values: dict[str, Any]) -> None:
        device = self.registered(device_id)
        if device.kind is None:
            raise InvalidRequest(f"device {device_id!r} has no kind: nothing can be set on it")
        problems = check_desired(device.kind, values)
        if problems:
            raise InvalidRequest("values." + "; values.".join(problems))

    def _put_desired(self, state: DesiredState) -> DesiredState:
        self.keep_desired(state)
        self.desired[state.device_id] = state
        return state

    def delta(self, device_id: str) -> dict[str, Any]:
        """Desired keys whose reported value differs (or is missing)."""
        desired = self.desired.get(device_id)
        if desired is None:
            return {}
        reported = self.reported.get(device_id)
        values = reported.values if reported else {}
        return {k: v for k, v in desired.values.items() if values.get(k) != v}

    # -- ingest -------------------------------------------------------------
    def apply(self, message: DeviceMessage, now: int) -> list[Change]:
        """Apply one decoded device message."""
        device_id = message.device_id
        device = self.devices.get(device_id)
        if device is None or not device.registered:
            return self._unknown(message, device, now)
        self.last_seen[device_id] = now
        ts = message.ts if isinstance(message, Telemetry | Event | StateReport) else None
        if ts is not None and ts > now + MAX_AHEAD_MS:
            self.rejected[FUTURE] += 1
            return [Rejected(FUTURE, device_id, "a day or more ahead")]
        self.accepted += 1
        changes: list[Change] = []
        if device.connectivity is not Connectivity.ONLINE and not (
            isinstance(message, Status) and not message.online
        ):
            device = replace(device, connectivity=Connectivity.ONLINE)
            self.devices[device_id] = device
            changes.append(ConnectivityChanged(replace(device, last_seen=now)))
        if isinstance(message, Telemetry):
            ts, latest = message.ts, self.latest
            points = []
            for metric, value in message.metrics.items():
                point = TelemetryPoint(device_id, metric, ts, value)
                latest[(device_id, metric)] = point
                points.append(point)
            changes.append(TelemetryAccepted(tuple(points)))
        elif isinstance(message, StateReport):
            previous = self.reported.get(device_id)
            state = ReportedState(
                device_id,
                (previous.version if previous else 0) + 1,
                dict(message.values),
                message.ts,
            )
            self.reported[device_id] = state
            changes.append(StateChanged(state))
        elif isinstance(message, Event):
            changes.append(
                EventAccepted(DeviceEvent(device_id, message.kind, message.ts, dict(message.data)))
            )
        elif isinstance(message, Status):
            changes += self._status(device, message, now)
        elif isinstance(message, Ack):
            changes.append(AckReceived(device_id, message))
        return changes

    def duplicate(self, device_id: str, now: int) -> Rejected:
        """A registered device's message that was already stored (see `replay`)."""
        self.last_seen[device_id] = now
        self.rejected[DUPLICATE] += 1
        return Rejected(DUPLICATE, device_id, "already stored (redelivered)")

    def is_registered(self, device_id: str) -> bool:
        device = self.devices.get(device_id)
        return device is not None and device.registered

    def _status(self, device: Device, message: Status, now: int) -> list[Change]:
        changes: list[Change] = []
        if message.firmware and message.firmware != device.firmware:
            device = replace(device, firmware=message.firmware)
            self.devices[device.device_id] = device
            changes.append(DeviceUpdated(device))
        target = Connectivity.ONLINE if message.online else Connectivity.OFFLINE
        if device.connectivity is not target:
            device = replace(device, connectivity=target)
            self.devices[device.device_id] = device
            changes.append(ConnectivityChanged(replace(device, last_seen=now)))
        return changes

    def _unknown(self, message: DeviceMessage, device: Device | None, now: int) -> list[Change]:
        changes: list[Change] = []
        if device is None:
            kind = message.kind if isinstance(message, Status) else None
            firmware = message.firmware if isinstance(message, Status) else None
            device = Device(
                message.device_id, None, kind, registered=False, last_seen=now, firmware=firmware
            )
            changes.append(DeviceUpdated(device))
        if isinstance(message, Status):
            connectivity = Connectivity.ONLINE if message.online else Connectivity.OFFLINE
            device = replace(device, connectivity=connectivity, last_seen=now)
        self.devices[message.device_id] = device
        self.last_seen[message.device_id] = now
        self.rejected[UNKNOWN_DEVICE] += 1
        changes.append(Rejected(UNKNOWN_DEVICE, message.device_id, "device is not registered"))
        return changes

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1

    def check_liveness(self, now: int) -> list[ConnectivityChanged]:
        """Devices silent for longer than the heartbeat timeout go offline."""
        changes = []
        limit = now - self.heartbeat_timeout_ms
        for device_id, device in self.devices.items():
            if device.registered and device.connectivity is Connectivity.ONLINE:
                seen = self.last_seen.get(device_id)
                if seen is not None and seen < limit:
                    offline = replace(device, connectivity=Connectivity.OFFLINE)
                    self.devices[device_id] = offline
                    changes.append(ConnectivityChanged(replace(offline, last_seen=seen)))
        return changes

    def restart_heartbeats(self, now: int) -> None:
        """After a broker outage: every online device gets a full heartbeat window."""
        for device_id, device in self.devices.items():
            if device.connectivity is Connectivity.ONLINE:
                self.last_seen[device_id] = max(self.last_seen.get(device_id, 0), now)

    @property
    def online(self) -> int:
        return sum(
            1
            for d in self.devices.values()
            if d.registered and d.connectivity is Connectivity.ONLINE
        )


def _values(meta: dict[str, FieldIntent]) -> dict[str, Any]:
    """The desired values: every field's intent but the removed ones."""
    return {k: i.value for k, i in meta.items() if i.value is not None}
