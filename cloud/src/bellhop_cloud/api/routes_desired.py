"""Desired state through the cloud: read it, set it (merged on the gateway with what staff
set on site, by the policy of docs/conflicts.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from bellhop_devices.kinds import check_desired
from bellhop_devices.messages import DeviceKind
from fastapi import APIRouter, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from bellhop_cloud import remote
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.command_bodies import whole
from bellhop_cloud.api.deps import CallerDep, RelayDep
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.routes_commands import READ, SEND, Name, Value, at, visible_device
from bellhop_cloud.bridge.downlink import OUTSTANDING, ItemKind, now_ms
from bellhop_cloud.db.schema import desired_states, devices, downlink
from bellhop_cloud.errors import Conflict, Forbidden, InvalidRequest
from bellhop_cloud.rbac.permissions import Permission
from bellhop_cloud.relay import Relay

router = APIRouter(tags=["desired state"], route_class=BoundaryRoute)


class DesiredIn(BaseModel):
    # Strict JSON, as the command bodies (api/command_bodies.py): "21" or true is no number.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"values": {"setpoint": 21.5}}]},
    )

    values: dict[Name, Value] = Field(
        min_length=1,
        max_length=32,
        description="fields to set; null removes one",
        json_schema_extra={"additionalProperties": False},
    )
    base_version: Annotated[int | None, BeforeValidator(whole)] = Field(
        default=None, ge=1, le=10**15, description="the version this change was made against"
    )
    ttl_s: float = Field(
        default=86_400.0, ge=1, le=7 * 86_400, description="never delivered after this long"
    )


class FieldOut(BaseModel):
    set_at: datetime
    set_by: str
    safety: bool = Field(description="a local safety override, set by staff on site")
    safety_until: datetime | None
    removed: bool


class OutcomeOut(BaseModel):
    field: str
    applied: bool = Field(description="true: the cloud's value; false: the gateway's stood")
    reason: str
    remote_value: Any
    local_value: Any


class DesiredOut(BaseModel):
    device_id: str
    version: int
    values: dict[str, Any]
    updated_at: datetime | None
    updated_by: str | None
    fields: dict[str, FieldOut]
    change_id: str | None = Field(description="the cloud change the last merge was of")
    outcomes: list[OutcomeOut] = Field(description="how that change merged, field by field")
    pending: list[str] = Field(description="changes sent through the cloud not merged yet")


class DesiredSetOut(BaseModel):
    change_id: str
    outcome: Literal["merged", "queued"]
    desired: DesiredOut


async def _desired(relay: Relay, hotel_id: str, device_id: str) -> DesiredOut:
    async with relay.store.read() as conn:
        row = (
            await conn.execute(
                sa.select(desired_states).where(
                    desired_states.c.hotel_id == hotel_id, desired_states.c.device_id == device_id
                )
            )
        ).first()
        pending = (
            await conn.execute(
                sa.select(downlink.c.item_id)
                .where(
                    downlink.c.hotel_id == hotel_id,
                    downlink.c.device_id == device_id,
                    downlink.c.kind == ItemKind.DESIRED.value,
                    downlink.c.state.in_(OUTSTANDING),
                    downlink.c.expires_at > now_ms(),
                )
                .order_by(downlink.c.requested_at)
            )
        ).scalars()
        waiting = list(pending)
    if row is None:
        return DesiredOut(
            device_id=device_id,
            version=0,
            values={},
            updated_at=None,
            updated_by=None,
            fields={},
            change_id=None,
            outcomes=[],
            pending=waiting,
        )
    fields = {
        name: FieldOut(
            set_at=at(f["set_at"]),
            set_by=f["set_by"],
            safety=f["safety"],
            safety_until=None if f["safety_until"] is None else at(f["safety_until"]),
            removed=f["removed"],
        )
        for name, f in (row.fields or {}).items()
    }
    return DesiredOut(
        device_id=device_id,
        version=row.version,
        values=row.values,
        updated_at=at(row.updated_at),
        updated_by=row.updated_by,
        fields=fields,
        change_id=row.change_id,
        outcomes=[OutcomeOut(**o) for o in row.outcomes or []],
        pending=waiting,
    )


async def _check_settable(
    relay: Relay, hotel_id: str, device_id: str, values: dict[str, Any]
) -> None:
    """Refused here, by field, what the gateway would refuse (the device's kind decides)."""
    async with relay.store.read() as conn:
        kind = (
            await conn.execute(
                sa.select(devices.c.kind).where(
                    devices.c.hotel_id == hotel_id, devices.c.device_id == device_id
                )
            )
        ).scalar()
    try:
        device_kind = DeviceKind(str(kind))
    except ValueError:
        raise Conflict(f"the device's kind ({kind}) is not known yet: nothing can be set") from None
    problems = check_desired(device_kind, {k: v for k, v in values.items() if v is not None})
    if problems:
        raise InvalidRequest(
            "; ".join(f"values.{p}" for p in problems),
            errors=[{"loc": ["body", "values", p.split(":", 1)[0]], "msg": p} for p in problems],
        )


@router.get(
    "/v1/hotels/{hotel_id}/devices/{device_id}/desired",
    responses=responses(401, 404, 422),
    openapi_extra=READ,
)
async def get_desired(hotel_id: str, device_id: str, relay: RelayDep, who: CallerDep) -> DesiredOut:
    """What staff and managers asked the device to be: each field's who and when, how the
    last change made through the cloud merged with what was set on site, and what is
    still on its way (docs/conflicts.md)."""
    _, found = await relay.hotel_access(who.user_id, hotel_id)
    await visible_device(relay, found, hotel_id, device_id)
    return await _desired(relay, hotel_id, device_id)


@router.put(
    "/v1/hotels/{hotel_id}/devices/{device_id}/desired",
    responses={
        202: {"model": DesiredSetOut, "description": "Queued for the gateway"},
        **responses(401, 403, 404, 409, 422),
    },
    openapi_extra=SEND,
)
async def set_desired(
    hotel_id: str,
    device_id: str,
    *,
    body: DesiredIn,
    relay: RelayDep,
    who: CallerDep,
    response: Response,
) -> DesiredSetOut:
    """Set desired state. The gateway merges it with what staff set on site, field by
    field (a later intent wins, a local safety override always stands); 200 with the
    merged state and each field's outcome when the gateway answered within 5 s, 202 when
    it is away or slower (merged when it connects, never after `ttl_s`)."""
    hotel, found = await relay.hotel_access(who.user_id, hotel_id)
    room = await visible_device(relay, found, hotel_id, device_id)
    if not found.can(Permission.SEND_COMMANDS, hotel_id=hotel_id, room_id=room):
        raise Forbidden(f"needs {Permission.SEND_COMMANDS.value}")
    await _check_settable(relay, hotel_id, device_id, body.values)
    change_id, outcome = await remote.set_desired(
        relay,
        hotel,
        who.user_id,
        device_id,
        body.values,
        base_version=body.base_version,
        ttl_s=min(body.ttl_s, relay.config.command_queue_max_s),
    )
    if outcome == "queued":
        response.status_code = 202
    desired = await _desired(relay, hotel_id, device_id)
    return DesiredSetOut(change_id=change_id, outcome=outcome, desired=desired)  # type: ignore[arg-type]
