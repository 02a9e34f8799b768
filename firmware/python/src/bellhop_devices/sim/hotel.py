"""A simulated hotel: rooms full of devices, or the devices of a provisioning file."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError, ProvisioningError
from bellhop_devices.messages import Channel, DeviceKind
from bellhop_devices.sim.device import (
    Broker,
    DeviceStats,
    Link,
    SimulatedDevice,
    backoff,
    wall_clock_ms,
)
from bellhop_devices.sim.faults import Faults

__all__ = [
    "ROOM_KINDS",
    "DeviceSpec",
    "Provisioning",
    "SimulatedHotel",
    "floor_of",
    "layout",
    "load_provisioning",
    "room_numbers",
]

log = logging.getLogger("bellhop.sim")

ROOM_KINDS = (
    DeviceKind.THERMOSTAT,
    DeviceKind.LIGHT,
    DeviceKind.DOOR_LOCK,
    DeviceKind.DOOR_SENSOR,
    DeviceKind.ENVIRONMENT_SENSOR,
)
"""What every room has; one room in `GAS_EVERY` (those with a kitchenette) adds a gas sensor."""
GAS_EVERY = 4


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    device_id: str
    room_id: str | None
    kind: DeviceKind
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Provisioning:
    broker: Broker
    devices: tuple[DeviceSpec, ...]
    hotel_id: str | None = None


def room_numbers(rooms: int, *, per_floor: int = 20) -> list[str]:
    """Hotel-style numbers: 101..120 on floor 1, 201..220 on floor 2, and so on."""
    if rooms < 0 or not 1 <= per_floor <= 99:
        raise ValueError("rooms must be >= 0 and per_floor within 1..99")
    return [f"{i // per_floor + 1}{i % per_floor + 1:02d}" for i in range(rooms)]


def floor_of(room_id: str) -> int:
    """The floor of a room number: everything but its last two digits."""
    return int(room_id[:-2] or "0")


def layout(rooms: int, *, per_floor: int = 20) -> list[DeviceSpec]:
    """A realistic device mix for `rooms` rooms, ids like `r101-thermostat`."""
    specs: list[DeviceSpec] = []
    for index, room in enumerate(room_numbers(rooms, per_floor=per_floor)):
        kinds = ROOM_KINDS + ((DeviceKind.GAS_SENSOR,) if index % GAS_EVERY == 0 else ())
        specs.extend(DeviceSpec(f"r{room}-{kind.value}", room, kind) for kind in kinds)
    return specs


def load_provisioning(path: Path) -> Provisioning:
    """Read a provisioning file (format in docs/device-protocol.md, "Simulator")."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProvisioningError(f"{path}: cannot read provisioning: {exc}") from exc
    try:
        return _provisioning(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise ProvisioningError(f"{path}: invalid provisioning: {exc!r}") from exc


def _provisioning(doc: Any) -> Provisioning:
    broker_doc = doc["broker"]
    ca = broker_doc.get("ca")
    port = broker_doc["port"]
    if type(port) is not int or not 0 < port < 65536:
        raise ValueError(f"broker port {port!r} is not a TCP port")
    broker = Broker(
        host=str(broker_doc["host"]),
        port=port,
        tls=bool(broker_doc.get("tls", False)),
        ca=None if ca is None else Path(ca),
    )
    devices = []
    seen: set[str] = set()
    for entry in doc["devices"]:
        device_id = str(entry["device_id"])
        if device_id in seen:
            raise ValueError(f"device {device_id!r} is listed twice")
        seen.add(device_id)
        try:
            codec.topic("h", device_id, Channel.STATUS)
        except DecodeError as exc:
            raise ValueError(exc.detail) from None
        room = entry.get("room_id")
        devices.append(
            DeviceSpec(
                device_id=device_id,
                room_id=None if room is None else str(room),
                kind=DeviceKind(entry["kind"]),
                username=entry.get("username"),
                password=entry.get("password"),
            )
        )
    hotel_id = doc.get("hotel_id")
    return Provisioning(broker, tuple(devices), None if hotel_id is None else str(hotel_id))


class SimulatedHotel:
    """Many `SimulatedDevice`s of one hotel sharing one event loop.

    An async context manager: entering starts every device (connections are
    gated so the broker sees a steady ramp, not a stampede); leaving stops
    them all, each publishing its clean `offline`.
    """

    def __init__(
        self,
        *,
        hotel_id: str,
        broker: Broker,
        devices: Sequence[DeviceSpec],
        interval_s: float = 10.0,
        faults: Faults | None = None,
        reconnect_delays: Callable[[], Iterator[float]] = backoff,
        seed: int | None = None,
        clock: Callable[[], int] = wall_clock_ms,
        connect_concurrency: int = 64,
        firmware: str = "sim-1.0.0",
    ) -> None:
        codec.broadcast_topic(hotel_id)  # validates the id
        self.hotel_id = hotel_id
        # One generator for the hotel: a Random per device would cost more
        # memory than the rest of the device.
        rng = random.Random(seed)
        gate = asyncio.Semaphore(connect_concurrency)
        self.devices: dict[str, SimulatedDevice] = {}
        for spec in devices:
            if spec.device_id in self.devices:
                raise ValueError(f"device {spec.device_id!r} appears twice")
            self.devices[spec.device_id] = SimulatedDevice(
                hotel_id=hotel_id,
                device_id=spec.device_id,
                kind=spec.kind,
                broker=broker,
                room_id=spec.room_id,
                username=spec.username,
                password=spec.password,
                interval_s=interval_s,
                faults=faults,
                firmware=firmware,
                reconnect_delays=reconnect_delays,
                rng=rng,
                clock=clock,
                connect_gate=gate,
            )

    @classmethod
    def from_provisioning(
        cls, provisioning: Provisioning, *, hotel_id: str | None = None, **options: Any
    ) -> SimulatedHotel:
        chosen = hotel_id or provisioning.hotel_id
        if chosen is None:
            raise ProvisioningError("no hotel id: give one or put hotel_id in the file")
        if provisioning.hotel_id is not None and chosen != provisioning.hotel_id:
            raise ProvisioningError(
                f"hotel {chosen!r} differs from the file's hotel {provisioning.hotel_id!r}"
            )
        return cls(
            hotel_id=chosen, broker=provisioning.broker, devices=provisioning.devices, **options
        )

    async def __aenter__(self) -> SimulatedHotel:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def start(self) -> None:
        for device in self.devices.values():
            device.start()
        log.info("%s: starting %d devices", self.hotel_id, len(self.devices))

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop() for d in self.devices.values()))
        log.info("%s: all %d devices stopped", self.hotel_id, len(self.devices))

    async def wait_online(self, timeout_s: float = 60.0) -> None:
        """Until every device has published its birth message."""
        async with asyncio.timeout(timeout_s):
            for device in self.devices.values():
                await device.wait_online(timeout_s)

    def online(self) -> int:
        return sum(d.link is Link.ONLINE for d in self.devices.values())

    def stats(self) -> DeviceStats:
        total = DeviceStats()
        for device in self.devices.values():
            total.add(device.stats)
        return total
