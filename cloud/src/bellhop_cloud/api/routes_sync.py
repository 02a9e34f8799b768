"""What the bridge brought: each gateway's link and backlog, telemetry history, alerts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.deps import Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.problems import responses
from bellhop_cloud.db.schema import alerts, devices, gateway_links, telemetry
from bellhop_cloud.errors import NotFound
from bellhop_cloud.orgs import require
from bellhop_cloud.rbac.permissions import Permission

router = APIRouter(tags=["sync"], route_class=BoundaryRoute)
READ = access_rule(Audience.HOTEL, Permission.READ_STATE)
HOTEL = responses(401, 404, 422)
MAX_POINTS = 10_000
MAX_ALERTS = 1000


class LinkOut(BaseModel):
    """A gateway's bridge as the relay sees it, and the backlog its edge reported."""

    gateway_id: str
    connected: bool
    connected_at: datetime | None
    disconnected_at: datetime | None
    close_reason: str | None
    last_heard_at: datetime | None
    last_acked_seq: int = Field(description="the bulk lane's last applied event")
    last_acked_priority_seq: int
    backlog_events: int = Field(description="events the edge has not sent yet")
    oldest_unsent_at: datetime | None
    gap_points: int = Field(description="raw telemetry points the edge had to thin")
    gap_events: int = Field(description="other events the edge had to drop")


class PointOut(BaseModel):
    ts: datetime
    value: float = Field(description="the point, or the bucket's average")
    min: float
    max: float
    count: int


class HistoryOut(BaseModel):
    device_id: str
    metric: str
    every_s: int | None
    points: list[PointOut]


class AlertOut(BaseModel):
    alert_id: str
    kind: str
    severity: str
    state: str
    device_id: str
    room_id: str | None
    message: str
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None
    cleared_at: datetime | None


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@router.get(
    "/v1/hotels/{hotel_id}/sync", responses=responses(401, 403, 404, 422), openapi_extra=READ
)
async def hotel_sync(hotel_id: str, relay: RelayDep, who: CallerDep) -> list[LinkOut]:
    """Each gateway's bridge: connected or not, how far it got, what its edge still holds."""
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    require(found, Permission.READ_STATE, hotel_id=hotel_id)
    async with relay.store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(gateway_links)
                .where(gateway_links.c.hotel_id == hotel_id)
                .order_by(gateway_links.c.gateway_id)
            )
        ).all()
    return [
        LinkOut(
            gateway_id=r.gateway_id,
            connected=r.connected,
            connected_at=r.connected_at,
            disconnected_at=r.disconnected_at,
            close_reason=r.close_reason,
            last_heard_at=r.last_heard_at,
            last_acked_seq=r.last_bulk_seq,
            last_acked_priority_seq=r.last_priority_seq,
            backlog_events=r.backlog_events,
            oldest_unsent_at=_at(r.oldest_unsent_ms),
            gap_points=r.gap_points,
            gap_events=r.gap_events,
        )
        for r in rows
    ]


@router.get(
    "/v1/hotels/{hotel_id}/devices/{device_id}/telemetry", responses=HOTEL, openapi_extra=READ
)
async def device_history(
    hotel_id: str,
    device_id: str,
    *,
    relay: RelayDep,
    who: CallerDep,
    metric: Annotated[str, Query(min_length=1, max_length=32, pattern="^[a-z][a-z0-9_]*$")],
    start: Annotated[AwareDatetime, Query(description="from, inclusive, with a time zone")],
    end: Annotated[AwareDatetime, Query(description="to, exclusive, with a time zone")],
    every_s: Annotated[int | None, Query(ge=1, le=86_400)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 1000,
) -> HistoryOut:
    """A device's history of one metric in [start, end), oldest first; with `every_s`,
    one point per bucket of that many seconds (average, min, max, count). A range that
    ends before it starts is empty."""
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    visible = found.visible_rooms(hotel_id)
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    async with relay.store.read() as conn:
        room = (
            await conn.execute(
                sa.select(devices.c.room_id).where(
                    devices.c.hotel_id == hotel_id, devices.c.device_id == device_id
                )
            )
        ).first()
        if room is None or (visible is not None and room[0] not in visible):
            raise NotFound("no such device")
        where = (
            telemetry.c.hotel_id == hotel_id,
            telemetry.c.device_id == device_id,
            telemetry.c.metric == metric,
            telemetry.c.ts >= start_ms,
            telemetry.c.ts < end_ms,
        )
        if every_s is None:
            raw = await conn.execute(
                sa.select(telemetry.c.ts, telemetry.c.value)
                .where(*where)
                .order_by(telemetry.c.ts)
                .limit(limit)
            )
            points = [
                PointOut(ts=_at(ts), value=v, min=v, max=v, count=1)  # type: ignore[arg-type]
                for ts, v in raw
            ]
        else:
            bucket = (telemetry.c.ts / (every_s * 1000)).cast(sa.BigInteger) * (every_s * 1000)
            rows = await conn.execute(
                sa.select(
                    bucket.label("b"),
                    sa.func.avg(telemetry.c.value),
                    sa.func.min(telemetry.c.value),
                    sa.func.max(telemetry.c.value),
                    sa.func.count(),
                )
                .where(*where)
                .group_by("b")
                .order_by("b")
                .limit(limit)
            )
            points = [
                PointOut(ts=_at(int(b)), value=avg, min=lo, max=hi, count=n)  # type: ignore[arg-type]
                for b, avg, lo, hi, n in rows
            ]
    return HistoryOut(device_id=device_id, metric=metric, every_s=every_s, points=points)


@router.get("/v1/hotels/{hotel_id}/alerts", responses=HOTEL, openapi_extra=READ)
async def hotel_alerts(
    hotel_id: str,
    relay: RelayDep,
    who: CallerDep,
    state: Literal["open", "raised", "acknowledged", "cleared"] | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALERTS)] = 100,
) -> list[AlertOut]:
    """The hotel's alerts, newest first; `open` is raised or acknowledged."""
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    visible = found.visible_rooms(hotel_id)
    query = sa.select(alerts).where(alerts.c.hotel_id == hotel_id)
    if state == "open":
        query = query.where(alerts.c.state != "cleared")
    elif state is not None:
        query = query.where(alerts.c.state == state)
    if visible is not None:
        query = query.where(alerts.c.room_id.in_(visible))
    query = query.order_by(alerts.c.raised_at.desc(), alerts.c.alert_id).limit(limit)
    async with relay.store.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        AlertOut(
            alert_id=r.alert_id,
            kind=r.kind,
            severity=r.severity,
            state=r.state,
            device_id=r.device_id,
            room_id=r.room_id,
            message=r.message,
            raised_at=_at(r.raised_at),  # type: ignore[arg-type]
            acknowledged_at=_at(r.acknowledged_at),
            acknowledged_by=r.acknowledged_by,
            note=r.note,
            cleared_at=_at(r.cleared_at),
        )
        for r in rows
    ]
