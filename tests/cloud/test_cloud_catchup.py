"""A catch-up's batches through the relay's real endpoint, on both stores: what is stored
is exactly what the edge sent (every point's id, name, time and value; each device event's
data), the lanes only ever move forward, gaps add up, and a refused event is skipped."""

from __future__ import annotations

import math
from typing import Any

import pytest
import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import Acked, Opened
from bellhop_cloud.bridge import sync
from bellhop_cloud.db.schema import device_events, devices, gateway_links, telemetry

from tests.cloud.bridging import BULK, PRIORITY, CloudHotel, RawGateway, bridge_server

T0 = 1_700_000_000_000
# Ids a gateway may use: anything but spaces and control characters, up to 64 characters;
# quotes, commas, braces and backslashes included (what an array literal would trip on).
DEVICES = ["r1-env", 'a"b,c{d}\\e', "ü-sensor-Ω", "x" * 64, "NULL", "r,2"]
VALUES = [0.1 + 0.2, -0.0, 5e-324, 1.7976931348623157e308, -2.5e-308, 21.5, 1e16, 123456789.123]


def point(seq: int, device_id: str, metric: str, value: float, ms: int) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_BULK)
    p = event.telemetry
    p.device_id, p.metric, p.value = device_id, metric, value
    p.ts.seconds, p.ts.nanos = divmod(ms, 1000)[0], (ms % 1000) * 1_000_000 + 999_999
    return event


def door(
    seq: int, device_id: str, data: dict[str, Any], lane: int = BULK
) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=lane)  # type: ignore[arg-type]
    e = event.device_event
    e.device_id, e.kind = device_id, common_pb2.EVENT_KIND_DOOR
    e.ts.FromMilliseconds(T0 + seq)
    e.data.update(data)
    return event


def gap(seq: int, points: int, others: int) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_BULK)
    g = event.gap
    g.first_seq, g.last_seq = seq - 10, seq - 1
    g.telemetry_points, g.other_events, g.reason = points, others, "cap"
    return event


async def rows(hotel: CloudHotel) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    async with hotel.api.relay.store.read() as conn:
        points = (
            await conn.execute(
                sa.select(
                    telemetry.c.device_id, telemetry.c.metric, telemetry.c.ts, telemetry.c.value
                )
                .where(telemetry.c.hotel_id == hotel.hotel_id)
                .order_by(telemetry.c.device_id, telemetry.c.metric, telemetry.c.ts)
            )
        ).all()
        events = (
            await conn.execute(
                sa.select(
                    device_events.c.device_id,
                    device_events.c.kind,
                    device_events.c.ts,
                    device_events.c.data,
                )
                .where(device_events.c.hotel_id == hotel.hotel_id)
                .order_by(device_events.c.ts)
            )
        ).all()
    return [tuple(r) for r in points], [tuple(r) for r in events]


async def lanes(hotel: CloudHotel) -> tuple[int, int, int, int]:
    async with hotel.api.relay.store.read() as conn:
        row = (
            await conn.execute(
                sa.select(
                    gateway_links.c.last_bulk_seq,
                    gateway_links.c.last_priority_seq,
                    gateway_links.c.gap_points,
                    gateway_links.c.gap_events,
                ).where(gateway_links.c.gateway_id == hotel.gateway_id)
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


async def test_what_is_stored_is_exactly_what_the_edge_sent(hotel: CloudHotel) -> None:
    sent: list[bridge_pb2.OutboxEvent] = []
    seq = 0
    for device_id in DEVICES:
        for n, value in enumerate(VALUES):
            seq += 1
            sent.append(point(seq, device_id, "humidity" if n % 2 else "co2_ppm", value, T0 + n))
    data = {"open": True, "who": 'say "hi", {x}', "n": 3, "nested": {"list": [1, "two", None]}}
    seq += 1
    sent.append(door(seq, "r,2", data))
    seq += 1
    sent.append(point(seq, "bad id", "humidity", 1.0, T0))  # a space: refused
    seq += 1
    sent.append(point(seq, "r1-env", "humidity", math.inf, T0 + 99))  # refused
    seq += 1
    sent.append(gap(seq, points=120, others=7))
    async with (
        bridge_server(hotel.api.relay) as bridge,
        RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw,
    ):
        await gw.until_event(Opened)
        await gw.send_batch(sent)
        acked = await gw.until_event(Acked)
        assert (acked.lane, acked.seq) == (BULK, seq)
        # A priority batch moves its own lane only; a gap adds to the counts.
        await gw.send_batch(
            [door(seq + 1, "r1-door", {"alarm": True}, PRIORITY), gap(seq + 2, 5, 1)]
        )
        await gw.until_event(Acked)
        assert bridge.endpoint.rejected_events == 2
    points, events = await rows(hotel)
    expected = sorted(
        (
            e.telemetry.device_id,
            e.telemetry.metric,
            e.telemetry.ts.ToMilliseconds(),
            e.telemetry.value,
        )
        for e in sent
        if e.WhichOneof("payload") == "telemetry"
        and e.telemetry.device_id != "bad id"
        and math.isfinite(e.telemetry.value)
    )
    assert len(points) == len(DEVICES) * len(VALUES)
    assert points == expected
    if not hotel.api.relay.store.is_sqlite:  # SQLite keeps -0.0 as 0
        # Bit for bit, the sign of zero included.
        signs = [math.copysign(1.0, p[3]) for p in points]
        assert signs == [math.copysign(1.0, p[3]) for p in expected]
    assert events == [
        ("r,2", "door", T0 + seq - 3, data),
        ("r1-door", "door", T0 + seq + 1, {"alarm": True}),
    ]
    assert await lanes(hotel) == (seq + 2, seq + 1, 125, 8)


async def test_a_lane_moves_past_a_batch_it_refused_whole_and_the_other_lane_stays(
    hotel: CloudHotel,
) -> None:
    async with (
        bridge_server(hotel.api.relay) as bridge,
        RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw,
    ):
        await gw.until_event(Opened)
        await gw.send_batch([point(s, "r1-env", "humidity", float(s), T0 + s) for s in (1, 2, 3)])
        await gw.until_event(Acked)
        await gw.send_batch([door(1, "r1-door", {"alarm": True}, PRIORITY)])
        await gw.until_event(Acked)
        assert await lanes(hotel) == (3, 1, 0, 0)
        # Nothing in it can be stored: no rows, and the lane moves past it all the same.
        await gw.send_batch([point(s, "bad id", "humidity", 1.0, T0 + s) for s in (4, 5)])
        assert (await gw.until_event(Acked)).seq == 5
        assert bridge.endpoint.rejected_events == 2
    points, events = await rows(hotel)
    assert [p[3] for p in points] == [1.0, 2.0, 3.0]
    assert len(events) == 1
    assert await lanes(hotel) == (5, 1, 0, 0)


def registration(seq: int, device_id: str) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_BULK)
    d = event.device
    d.device_id, d.room_id, d.registered = device_id, "101", True
    d.kind = common_pb2.DEVICE_KIND_THERMOSTAT
    d.connectivity = common_pb2.CONNECTIVITY_ONLINE
    return event


def report(seq: int, device_id: str, values: dict[str, Any]) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_BULK)
    event.state.device_id = device_id
    event.state.values.update(values)
    event.state.updated_at.FromMilliseconds(T0 + seq)
    return event


async def test_each_devices_latest_state_is_kept_registered_or_not(hotel: CloudHotel) -> None:
    async with (
        bridge_server(hotel.api.relay) as bridge,
        RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw,
    ):
        await gw.until_event(Opened)
        await gw.send_batch(
            [
                registration(1, "th-101"),
                report(2, "th-101", {"setpoint": 21.0}),
                report(3, "new-1", {"mode": "heat"}),
                report(4, "th-101", {"setpoint": 22.5, "mode": "cool"}),
            ]
        )
        await gw.until_event(Acked)
        await gw.send_batch([report(5, "new-1", {"mode": "off"}), report(6, "th-102", {})])
        await gw.until_event(Acked)
    async with hotel.api.relay.store.read() as conn:
        found = {
            r.device_id: (r.kind, r.online, r.state, r.last_seen)
            for r in await conn.execute(
                sa.select(devices).where(devices.c.hotel_id == hotel.hotel_id)
            )
        }
    assert {d: found[d][:3] for d in found} == {
        "th-101": ("thermostat", True, {"setpoint": 22.5, "mode": "cool"}),
        "new-1": ("unspecified", False, {"mode": "off"}),
        "th-102": ("unspecified", False, {}),
    }
    # A state report is the device heard from: when it was seen moves forward with it.
    seen = {d: found[d][3].timestamp() * 1000 for d in found}
    assert seen == {"th-101": T0 + 4, "new-1": T0 + 5, "th-102": T0 + 6}


async def test_an_older_report_does_not_move_when_a_device_was_seen_back(
    hotel: CloudHotel,
) -> None:
    """A resync's batch may carry an older report: `last_seen` never goes back."""
    async with (
        bridge_server(hotel.api.relay) as bridge,
        RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw,
    ):
        await gw.until_event(Opened)
        await gw.send_batch([registration(1, "th-101"), report(9, "th-101", {"setpoint": 20.0})])
        await gw.until_event(Acked)
        older = report(10, "th-101", {"setpoint": 19.0})
        older.state.updated_at.FromMilliseconds(T0 + 2)
        await gw.send_batch([older])
        await gw.until_event(Acked)
    async with hotel.api.relay.store.read() as conn:
        row = (
            await conn.execute(
                sa.select(devices.c.state, devices.c.last_seen).where(
                    devices.c.hotel_id == hotel.hotel_id, devices.c.device_id == "th-101"
                )
            )
        ).one()
    assert row.last_seen.timestamp() * 1000 == T0 + 9


def test_ids_travel_joined_only_when_they_split_back_exactly() -> None:
    assert sync._joined(["r1-env", 'a"b,c'], "device id") == 'r1-env\x1fa"b,c'
    assert sync._joined([], "device id") == ""
    for values in (["r1\x1fenv"], [""], ["a", ""]):
        with pytest.raises(ValueError, match="cannot be joined"):
            sync._joined(values, "device id")
