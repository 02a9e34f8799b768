"""Frames a real gateway never sends, against the relay's real endpoint: refused with a
named reason and counted; duplicates and replays applied once; the endpoint lives on."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import Acked, Opened, frames
from bellhop_cloud.db.schema import alerts, device_events, devices, telemetry
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.cloud.bridging import (
    BULK,
    CloudHotel,
    RawGateway,
    bridge_server,
    cloud_hotel,
    until,
)
from tests.cloud.support import Api


def reading(
    seq: int, device_id: str = "r1-env", lane: bridge_pb2.Lane.ValueType = BULK
) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=lane)
    event.telemetry.device_id = device_id
    event.telemetry.metric = "humidity"
    event.telemetry.value = float(seq)
    event.telemetry.ts.FromMilliseconds(1_700_000_000_000 + seq)
    return event


def breach(seq: int) -> bridge_pb2.OutboxEvent:
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_PRIORITY)
    event.device_event.device_id = "r1-door"
    event.device_event.kind = common_pb2.EVENT_KIND_BREACH
    event.device_event.ts.FromMilliseconds(1_700_000_000_000 + seq)
    return event


async def stored(hotel: CloudHotel) -> tuple[int, int]:
    """Telemetry rows and device events the relay holds for the hotel."""
    async with hotel.api.relay.store.read() as conn:
        points = await conn.scalar(
            sa.select(sa.func.count()).where(telemetry.c.hotel_id == hotel.hotel_id)
        )
        events = await conn.scalar(
            sa.select(sa.func.count()).where(device_events.c.hotel_id == hotel.hotel_id)
        )
    return int(points or 0), int(events or 0)


async def test_duplicated_replayed_and_reordered_batches_are_applied_once(
    hotel: CloudHotel,
) -> None:
    async with bridge_server(hotel.api.relay) as bridge:
        async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw:
            await gw.until_event(Opened)
            first = [reading(1), reading(2), breach(3)]
            await gw.send_batch(first)
            acked = await gw.until_event(Acked)
            assert acked.seq in {2, 3}
            # The same batch again on the same connection: a protocol breach, closed
            # without harm (the edge never does this; a reconnect resumes).
            await gw.send_raw_batch(first)
            error = await gw.error()
            assert error.code == "out_of_order"
            assert not error.fatal
        # A new connection replays what the relay has: refused, nothing applied again.
        async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw:
            welcome = await gw.until_event(Opened)
            assert welcome.last_acked[BULK] == 2
            await gw.send_raw_batch([reading(1), reading(2), reading(4)])
            assert (await gw.error()).code == "out_of_order"
        # Reordered: 5 before 4 in one batch, the same.
        async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw:
            await gw.until_event(Opened)
            await gw.send_raw_batch([reading(5), reading(4)])
            assert (await gw.error()).code == "out_of_order"
        # The gateway resumes where the relay's Welcome says: each event once.
        async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw:
            await gw.until_event(Opened)
            await gw.send_batch([reading(4), reading(5)])
            acked = await gw.until_event(Acked)
            assert (acked.lane, acked.seq) == (BULK, 5)
    assert await stored(hotel) == (4, 1)
    assert bridge.endpoint.closes["out_of_order"] == 3


async def test_a_gateway_claiming_another_hotel_is_refused_and_counted(
    hotel: CloudHotel, api: Api
) -> None:
    other = await cloud_hotel(api, owner_name="other")
    async with bridge_server(hotel.api.relay) as bridge:
        # This gateway's own key, another tenant's hotel.
        async with RawGateway.opened(bridge.url, hotel.gateway_id, other.hotel_id, hotel.key) as gw:
            error = await gw.error()
        assert (error.code, error.fatal) == ("wrong_hotel", True)
        # Another gateway's id with this gateway's key: the proof fails.
        async with RawGateway.opened(bridge.url, other.gateway_id, other.hotel_id, hotel.key) as gw:
            error = await gw.error()
        assert (error.code, error.fatal) == ("bad_proof", True)
        async with RawGateway.opened(bridge.url, "gw_nobody", hotel.hotel_id, hotel.key) as gw:
            error = await gw.error()
        assert (error.code, error.fatal) == ("unknown_gateway", True)
    assert bridge.endpoint.closes == {"wrong_hotel": 1, "bad_proof": 1, "unknown_gateway": 1}
    assert await stored(other) == (0, 0)


def _frame(**body: object) -> bytes:
    return frames.encode(bridge_pb2.Frame(**body))  # type: ignore[arg-type]


async def test_bad_frames_get_a_named_close_and_a_count(hotel: CloudHotel) -> None:
    async with bridge_server(hotel.api.relay) as bridge:
        cases: list[tuple[bytes | str, str]] = [
            (b"\xff\xff\xff", "bad_frame"),
            ("hello", "bad_frame"),
            (b"", "bad_frame"),
            (_frame(hello=bridge_pb2.Hello(protocol_version=99)), "unsupported_version"),
            (_frame(heartbeat=bridge_pb2.Heartbeat()), "unexpected_frame"),
            (_frame(events=bridge_pb2.EventBatch()), "unexpected_frame"),
        ]
        for data, code in cases:
            async with connect(bridge.url, compression=None, open_timeout=5) as ws:
                await ws.send(data)
                frame = frames.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
                assert frame.error.code == code, (data, frame)
        # Oversize: the WebSocket layer refuses it (close code 1009) before any parsing.
        async with connect(bridge.url, compression=None, open_timeout=5, max_size=None) as ws:
            await ws.send(b"\x00" * (frames.MAX_FRAME_BYTES + 1))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1009
        # A handshake never finished: closed at the deadline (2 s here).
        async with connect(bridge.url, compression=None, open_timeout=5) as ws:
            frame = frames.decode(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[arg-type]
            assert frame.error.code == "handshake_timeout"
        # Not the bridge's path.
        with pytest.raises(Exception, match="404"):
            async with connect(bridge.url.replace("/v1/bridge", "/elsewhere"), open_timeout=5):
                pass
    closes = bridge.endpoint.closes
    assert closes["bad_frame"] == 3
    assert closes["unsupported_version"] == 1
    assert closes["unexpected_frame"] == 2
    assert closes["handshake_timeout"] == 1
    assert closes["too_large"] == 1
    assert closes["not_found"] == 1


async def test_a_snapshot_entry_refused_as_invalid_keeps_its_device_and_alert(
    hotel: CloudHotel,
) -> None:
    """A snapshot is the edge's whole picture, but an entry the relay skips as invalid is
    not a device that was removed nor an alert that ended: both stay as they were."""

    def device(device_id: str, firmware: str) -> common_pb2.Device:
        d = common_pb2.Device(device_id=device_id, registered=True, firmware=firmware)
        d.kind = common_pb2.DEVICE_KIND_DOOR_SENSOR
        return d

    def alert(message: str) -> common_pb2.Alert:
        a = common_pb2.Alert(alert_id="a1", device_id="r1-door", message=message)
        a.kind = common_pb2.ALERT_KIND_BREACH
        a.state = common_pb2.ALERT_STATE_RAISED
        a.raised_at.FromMilliseconds(1_700_000_000_000)
        return a

    async with (
        bridge_server(hotel.api.relay) as bridge,
        RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw,
    ):
        await gw.until_event(Opened)
        first = [
            bridge_pb2.OutboxEvent(seq=1, lane=BULK, device=device("r1-door", "1.0")),
            bridge_pb2.OutboxEvent(seq=2, lane=BULK, device=device("r1-env", "1.0")),
            bridge_pb2.OutboxEvent(seq=1, lane=bridge_pb2.LANE_PRIORITY, alert=alert("open")),
        ]
        await gw.send_batch(first)
        await gw.until_event(Acked)
        snapshot = bridge_pb2.Snapshot(
            devices=[device("r1-door", "1.1\x1b"), device("r1-env", "1.1")],
            alerts=[alert("open\x07")],
        )
        gw.conn.send_snapshot(snapshot, asyncio.get_running_loop().time())
        await gw.flush()
        await until(lambda: bridge.endpoint.snapshots >= 1)
    async with hotel.api.relay.store.read() as conn:
        kept = await conn.execute(
            sa.select(devices.c.device_id, devices.c.firmware)
            .where(devices.c.hotel_id == hotel.hotel_id)
            .order_by(devices.c.device_id)
        )
        state = await conn.scalar(sa.select(alerts.c.state).where(alerts.c.alert_id == "a1"))
    assert [tuple(row) for row in kept] == [("r1-door", "1.0"), ("r1-env", "1.1")]
    assert state == "raised"
