"""P5's hotel and its backlog (bench/catchup.py): the devices, the outbox events an outage
leaves behind them, written through the gateway's store writer, and what was buffered."""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bellhop_edge.core.model import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    DeviceEvent,
    EventKind,
    ReportedState,
    TelemetryPoint,
)
from bellhop_edge.core.ops import PutAlert, PutEvent, PutReported, PutTelemetry, WriteOp
from bellhop_edge.store import StoreWriter

# The hotel: per room an environment sensor and a thermostat (three metrics each, every
# 10 s) and a door sensor; a gas sensor in every tenth room.
ROOMS: Final = 500
GAS_EVERY: Final = 10
INTERVAL_MS: Final = 10_000
DOOR_EVENTS_PER_TICK: Final = 20
BUTTON_EVENTS_PER_TICK: Final = 5
STATES_EVERY_TICKS: Final = 25
ALERT_EVERY_TICKS: Final = 50
# Alarms queued behind the backlog; each is a device event and the alert it raises.
ALARMS: Final = 5
# The store writer compacts a chunk at least every idle second; this long without one
# means it is done.
QUIET_S: Final = 2.5


@dataclass(frozen=True)
class Fleet:
    rooms: list[str]
    sensors: list[tuple[str, tuple[str, ...]]]  # device id, its metrics
    doors: list[str]
    gas: list[str]
    thermostats: list[str]
    registry: list[dict[str, str]]

    @classmethod
    def build(cls) -> Fleet:
        rooms = [f"{100 + n}" for n in range(ROOMS)]
        sensors: list[tuple[str, tuple[str, ...]]] = []
        registry: list[dict[str, str]] = []
        doors, gas, thermostats = [], [], []
        for n, room in enumerate(rooms):
            for device_id, kind in (
                (f"env-{room}", "environment_sensor"),
                (f"th-{room}", "thermostat"),
                (f"door-{room}", "door_sensor"),
            ):
                registry.append({"device_id": device_id, "room_id": room, "kind": kind})
            sensors.append((f"env-{room}", ("temperature", "humidity", "co2")))
            sensors.append((f"th-{room}", ("temperature", "setpoint", "valve")))
            doors.append(f"door-{room}")
            thermostats.append(f"th-{room}")
            if n % GAS_EVERY == 0:
                registry.append({"device_id": f"gas-{room}", "room_id": room, "kind": "gas_sensor"})
                sensors.append((f"gas-{room}", ("gas_ppm",)))
                gas.append(f"gas-{room}")
        return cls(rooms, sensors, doors, gas, thermostats, registry)

    @property
    def points_per_tick(self) -> int:
        return sum(len(metrics) for _, metrics in self.sensors)

    def backlog(self, events: int, now: int) -> Iterator[WriteOp]:
        """Ops that append exactly `events` outbox events, the alarms last.

        Device time runs 10 s per round of reports, ending now, so that every
        (device, metric, time) and (device, kind, time) is distinct: a row lost or
        applied twice at the relay shows in the counts.
        """
        alarm_events = 2 * ALARMS
        budget = events - alarm_events
        if budget < 0:
            raise ValueError(f"at least {alarm_events} events")
        per_tick = self.points_per_tick + DOOR_EVENTS_PER_TICK + BUTTON_EVENTS_PER_TICK
        ticks = math.ceil(budget / per_tick) + 1
        base = now - ticks * INTERVAL_MS
        alert_no = 0
        tick = 0
        while budget > 0:
            ts = base + tick * INTERVAL_MS
            for device_id, metrics in self.sensors:
                take = min(len(metrics), budget)
                if take <= 0:
                    break
                yield PutTelemetry(
                    [
                        TelemetryPoint(device_id, metric, ts, 20.0 + (tick % 50) / 10 + i)
                        for i, metric in enumerate(metrics[:take])
                    ]
                )
                budget -= take
            for j in range(DOOR_EVENTS_PER_TICK):
                if budget <= 0:
                    break
                door = self.doors[(tick * DOOR_EVENTS_PER_TICK + j) % len(self.doors)]
                yield PutEvent(DeviceEvent(door, EventKind.DOOR, ts + 1, {"open": j % 2 == 0}))
                budget -= 1
            for j in range(BUTTON_EVENTS_PER_TICK):
                if budget <= 0:
                    break
                thermostat = self.thermostats[(tick * 7 + j) % len(self.thermostats)]
                yield PutEvent(DeviceEvent(thermostat, EventKind.BUTTON, ts + 2, {"button": 1}))
                budget -= 1
            if tick % STATES_EVERY_TICKS == 0:
                for j in range(min(20, budget)):
                    thermostat = self.thermostats[(tick + j) % len(self.thermostats)]
                    values = {"setpoint": 21.0 + j % 3, "mode": "heat"}
                    yield PutReported(ReportedState(thermostat, tick + 1, values, ts + 3))
                    budget -= 1
            if tick % ALERT_EVERY_TICKS == 0 and budget > 0:
                alert_no += 1
                door = self.doors[tick % len(self.doors)]
                yield PutAlert(
                    _alert(f"bench-{alert_no}", AlertKind.DOOR_LEFT_OPEN, door, ts + 4, warn=True)
                )
                budget -= 1
            tick += 1
        # The alarms: what the operator must see first when the link is back.
        for n in range(ALARMS):
            use_gas = n % 2 == 1 and self.gas
            device_id = self.gas[n % len(self.gas)] if use_gas else self.doors[-1 - n]
            kind = EventKind.GAS if use_gas else EventKind.BREACH
            ts = now + n
            yield PutEvent(DeviceEvent(device_id, kind, ts, {"alarm": True}))
            alert_kind = AlertKind.GAS if use_gas else AlertKind.BREACH
            yield PutAlert(_alert(f"alarm-{n}", alert_kind, device_id, ts, warn=False))


def _alert(alert_id: str, kind: AlertKind, device_id: str, ts: int, *, warn: bool) -> Alert:
    return Alert(
        alert_id=alert_id,
        kind=kind,
        severity=AlertSeverity.WARNING if warn else AlertSeverity.CRITICAL,
        state=AlertState.RAISED,
        device_id=device_id,
        room_id=device_id.split("-", 1)[1],
        message=f"{kind.value} at {device_id}",
        raised_at=ts,
    )


async def fill(writer: StoreWriter, fleet: Fleet, events: int) -> float:
    """Write the backlog through the gateway's store writer; returns seconds taken."""
    started = time.perf_counter()
    for op in fleet.backlog(events, int(time.time() * 1000)):
        await writer.put(op)  # waits while the writer is behind, as ingest does
    await writer.flush()
    return time.perf_counter() - started


async def quiescent(writer: StoreWriter, timeout: float) -> None:
    """Wait until the writer has moved the burst's staged telemetry into its index.

    It does so in the background, a chunk per batch or per idle second, once the
    staged rows pass a threshold; a gateway whose backlog grew over an outage has long
    finished, so neither the floor nor the catch-up should share the edge with it.
    Over when no chunk has moved for `QUIET_S`.
    """
    deadline = time.monotonic() + timeout
    moved, since = writer.stats.compacted, time.monotonic()
    while time.monotonic() - since < QUIET_S:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the store writer still compacting after {timeout:.0f} s")
        await asyncio.sleep(0.1)
        if writer.stats.compacted != moved:
            moved, since = writer.stats.compacted, time.monotonic()


@dataclass(frozen=True)
class Census:
    """What the edge buffered after `after`: per lane the last seq, per kind the count."""

    after: int
    last_seq: dict[int, int]
    kinds: dict[int, int]

    @property
    def events(self) -> int:
        return sum(self.kinds.values())


def census(edge_db: Path, after: int) -> Census:
    conn = sqlite3.connect(f"file:{edge_db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT lane, kind, count(*), max(seq) FROM outbox WHERE seq > ? GROUP BY lane, kind",
            (after,),
        ).fetchall()
    finally:
        conn.close()
    last: dict[int, int] = {}
    kinds: dict[int, int] = {}
    for lane, kind, count, top in rows:
        last[lane] = max(last.get(lane, 0), int(top))
        kinds[kind] = kinds.get(kind, 0) + int(count)
    return Census(after, last, kinds)
