"""A full picture of the hotel for the relay's resync: rooms, devices, reported and desired
state, open alerts."""

from __future__ import annotations

from bellhop.bridge.v1 import bridge_pb2

from bellhop_edge import convert
from bellhop_edge.core.alerts import AlertBook
from bellhop_edge.core.hotel import Hotel

__all__ = ["snapshot"]


def snapshot(
    hotel: Hotel, alerts: AlertBook, request_id: str, outbox_seq: int
) -> bridge_pb2.Snapshot:
    """As things are now; `outbox_seq`: the last outbox event this picture includes."""
    return bridge_pb2.Snapshot(
        request_id=request_id,
        rooms=[convert.room(r) for r in sorted(hotel.rooms.values(), key=lambda r: r.room_id)],
        devices=[convert.device(d) for d in hotel.list_devices(include_unknown=True)],
        states=[convert.reported(s) for _, s in sorted(hotel.reported.items())],
        alerts=[convert.alert(a) for a in alerts.open_alerts()],
        outbox_seq=outbox_seq,
        desired=[convert.desired(s) for _, s in sorted(hotel.desired.items())],
    )
