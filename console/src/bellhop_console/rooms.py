"""What a room's tile says, from its devices and alerts (the same rules as `static/console.js`).

- occupied: a device reports `occupied: true`, or, without such a report, a light is on;
- door: a door sensor's `open`; a lock's `locked`;
- temperature against setpoint: a reported `temperature` and a thermostat's `setpoint`;
- alarms: alerts of the room not cleared; devices offline; battery low: a reported
  `battery` under 20 % or `battery_low: true`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bellhop_sdk import Alert, AlertState, Device, Room

__all__ = ["BATTERY_LOW", "Tile", "floors", "metrics_of", "tile_facts", "tile_of"]

BATTERY_LOW: Final = 20
# Metrics each kind sends as telemetry, for the room page's history charts.
METRICS: Final[Mapping[str, tuple[str, ...]]] = {
    "thermostat": ("temperature", "setpoint"),
    "environment_sensor": ("temperature", "humidity", "luminosity"),
    "light": ("brightness", "power_w"),
    "gas_sensor": ("gas_ppm",),
}


@dataclass
class Tile:
    room: Room
    devices: list[Device] = field(default_factory=list)
    alarms: int = 0
    occupied: bool | None = None
    door_open: bool | None = None
    locked: bool | None = None
    temperature: float | None = None
    setpoint: float | None = None
    offline: int = 0
    battery_low: int = 0

    @property
    def state(self) -> str:
        """The tile's headline, for its colour and for screen readers."""
        if self.alarms:
            return "alarm"
        if self.offline:
            return "offline"
        return "occupied" if self.occupied else "vacant"

    def device_json(self) -> dict[str, Any]:
        """What the page's script needs to recompute the tile from live events."""
        return {
            d.device_id: {"kind": d.kind, "online": d.online, "reported": dict(d.reported)}
            for d in self.devices
        }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def tile_of(room: Room, devices: Iterable[Device], alerts: Iterable[Alert]) -> Tile:
    alarms = sum(
        1 for a in alerts if a.room_id == room.room_id and a.state is not AlertState.CLEARED
    )
    return tile_facts(room, devices, alarms)


def tile_facts(room: Room, devices: Iterable[Device], alarms: int) -> Tile:
    """The tile of `room` from its devices and its count of alerts not cleared."""
    tile = Tile(room, list(devices), alarms=alarms)
    lights_on = False
    for d in tile.devices:
        r = d.reported
        if not d.online:
            tile.offline += 1
        if isinstance(r.get("occupied"), bool):
            tile.occupied = bool(r["occupied"]) or bool(tile.occupied)
        if d.kind == "light" and r.get("on") is True:
            lights_on = True
        if isinstance(r.get("open"), bool):
            tile.door_open = bool(r["open"])
        if isinstance(r.get("locked"), bool):
            tile.locked = bool(r["locked"])
        if (t := _number(r.get("temperature"))) is not None:
            tile.temperature = t
        if d.kind == "thermostat" and (s := _number(r.get("setpoint"))) is not None:
            tile.setpoint = s
        battery = _number(r.get("battery"))
        if r.get("battery_low") is True or (battery is not None and battery < BATTERY_LOW):
            tile.battery_low += 1
    if tile.occupied is None:
        tile.occupied = lights_on
    return tile


def floors(
    rooms: Sequence[Room], devices: Sequence[Device], alerts: Sequence[Alert]
) -> list[tuple[str, list[Tile]]]:
    """Tiles by floor, lowest first; rooms without a floor last."""
    by_room: dict[str, list[Device]] = {}
    for d in devices:
        if d.room_id is not None:
            by_room.setdefault(d.room_id, []).append(d)
    grouped: dict[int | None, list[Tile]] = {}
    for room in sorted(rooms, key=lambda r: r.room_id):
        grouped.setdefault(room.floor, []).append(
            tile_of(room, by_room.get(room.room_id, []), alerts)
        )
    order = sorted(grouped, key=lambda f: (f is None, f or 0))
    return [("Other rooms" if f is None else f"Floor {f}", grouped[f]) for f in order]


def metrics_of(device: Device) -> list[str]:
    """The metrics to chart for a device: its kind's, then any numeric reported value."""
    names = list(METRICS.get(device.kind, ()))
    for key, value in device.reported.items():
        if _number(value) is not None and key not in names:
            names.append(key)
    return names
