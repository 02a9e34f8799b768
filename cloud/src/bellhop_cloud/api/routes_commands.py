"""Remote control: commands to a device or a fleet, and acknowledging alerts.

A command goes down the hotel's bridge and runs on the edge's own command path
(the same deadline, expiry and at-most-once rules as on the hotel LAN). The
caller chooses: `mode=wait` answers with the result (504 past `timeout_s`, 409
when the gateway is not connected), `mode=queue` answers 202 at once with a
command resource to poll (or follow on the event stream); a queued command is
delivered when the gateway connects and never after `ttl_s`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from bellhop_bridge import fleet_command_id
from fastapi import APIRouter, Body, Response

from bellhop_cloud import remote
from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.command_bodies import (
    MAX_FLEET,
    AckIn,
    AckOut,
    CommandIn,
    CommandOut,
    FleetIn,
    FleetOut,
    Name,
    SendIn,
    TargetIn,
    Value,
)
from bellhop_cloud.api.deps import Audience, CallerDep, RelayDep, access_rule
from bellhop_cloud.api.problems import responses
from bellhop_cloud.db.schema import alerts, devices, rooms
from bellhop_cloud.errors import CommandIdReused, CommandTimedOut, Conflict, Forbidden, NotFound
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.rbac.permissions import Access, Permission
from bellhop_cloud.relay import Relay

# Name and Value: also the desired state's (api/routes_desired.py).
__all__ = ["READ", "SEND", "Name", "Value", "at", "require_somewhere", "router", "visible_device"]

router = APIRouter(tags=["commands"], route_class=BoundaryRoute)
SEND = access_rule(Audience.HOTEL, Permission.SEND_COMMANDS)
READ = access_rule(Audience.HOTEL, Permission.READ_STATE)
ACK = access_rule(Audience.HOTEL, Permission.ACKNOWLEDGE_ALERTS)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _out(s: remote.CommandStatus) -> CommandOut:
    return CommandOut(
        command_id=s.command_id,
        device_id=s.device_id,
        name=s.name,
        state=s.state,
        result=s.result,
        error=s.error,
        requested_by=s.requested_by,
        requested_at=at(s.requested_at),
        expires_at=at(s.expires_at),
        completed_at=None if s.completed_at is None else at(s.completed_at),
    )


def _limits(relay: Relay, body: SendIn) -> tuple[float, float]:
    """The time to wait and the time to live, within this relay's own limits (a caller
    asking for more gets the limit; the answer's `expires_at` says what was kept)."""
    config = relay.config
    return min(body.timeout_s, config.command_wait_max_s), min(
        body.ttl_s, config.command_queue_max_s
    )


def require_somewhere(found: Access, permission: Permission, hotel_id: str) -> None:
    """The caller holds `permission` on the hotel or on one of its rooms at least (what a
    room is then asked of is checked per room)."""
    rooms = found.visible_rooms(hotel_id) or ()
    if not found.can(permission, hotel_id=hotel_id) and not any(
        found.can(permission, hotel_id=hotel_id, room_id=r) for r in rooms
    ):
        raise Forbidden(f"needs {permission.value}")


async def _hotel(relay: Relay, user_id: str, hotel_id: str) -> tuple[Hotel, Access]:
    hotel, found = await relay.hotel_access(user_id, hotel_id)
    return hotel, found


async def visible_device(relay: Relay, found: Access, hotel_id: str, device_id: str) -> str | None:
    """The device's room, if the caller may see the device; else NotFound. Read by the
    relay's device reader, as the device pages are: on SQLite inline on the loop, not a
    few hops to the store's thread; on PostgreSQL one round trip."""
    device = await relay.devices.one(hotel_id, device_id, stale_before=datetime.now(UTC))
    visible = found.visible_rooms(hotel_id)
    if device is None or (visible is not None and device["room_id"] not in visible):
        raise NotFound("no such device")
    room: str | None = device["room_id"]
    return room


@router.post(
    "/v1/hotels/{hotel_id}/devices/{device_id}/commands",
    responses={
        202: {"model": CommandOut, "description": "Queued; poll the command"},
        **responses(401, 403, 404, 409, 422, 504),
    },
    openapi_extra=SEND,
)
async def send_command(
    hotel_id: str,
    device_id: str,
    *,
    body: CommandIn,
    relay: RelayDep,
    who: CallerDep,
    response: Response,
) -> CommandOut:
    """Send one command to a device; see the module's description for the modes."""
    timeout_s, ttl_s = _limits(relay, body)
    hotel, found = await _hotel(relay, who.user_id, hotel_id)
    room = await visible_device(relay, found, hotel_id, device_id)
    if not found.can(Permission.SEND_COMMANDS, hotel_id=hotel_id, room_id=room):
        raise Forbidden(f"needs {Permission.SEND_COMMANDS.value}")
    request = remote.CommandRequest(
        body.command_id or uuid.uuid4().hex, device_id, body.name, body.params
    )
    queue = body.mode == "queue"
    (status,) = await _unless_reused(
        relay,
        hotel_id,
        timeout_s,
        await remote.send_commands(
            relay,
            hotel,
            who.user_id,
            [request],
            queue=queue,
            ttl_s=ttl_s,
            timeout_s=timeout_s,
            wait_s=0 if queue else timeout_s + 1.0,
        ),
    )
    if queue and not status.finished:
        response.status_code = 202
        response.headers["Location"] = f"/v1/hotels/{hotel_id}/commands/{status.command_id}"
    elif not status.finished:
        raise CommandTimedOut(
            f"no result within {timeout_s:g} s; the command may still run until its"
            f" expiry: follow /v1/hotels/{hotel_id}/commands/{status.command_id}"
        )
    return _out(status)


@router.post(
    "/v1/hotels/{hotel_id}/commands",
    responses={
        202: {"model": FleetOut, "description": "Queued; poll each command"},
        **responses(401, 403, 404, 409, 422),
    },
    openapi_extra=SEND,
)
async def send_fleet(
    hotel_id: str, body: FleetIn, relay: RelayDep, who: CallerDep, response: Response
) -> FleetOut:
    """One command to every device the target selects (rooms, floors, kinds, ids, or all),
    each with its own id derived from `fleet_id`: a retried fleet runs once per device."""
    timeout_s, ttl_s = _limits(relay, body)
    hotel, found = await _hotel(relay, who.user_id, hotel_id)
    require_somewhere(found, Permission.SEND_COMMANDS, hotel_id)
    chosen = await _select(relay, hotel_id, body.target, found)
    if not chosen:
        raise NotFound("the target matches no device")
    fleet_id = body.fleet_id or uuid.uuid4().hex
    requests = [
        remote.CommandRequest(fleet_command_id(fleet_id, d), d, body.name, body.params)
        for d in chosen
    ]
    queue = body.mode == "queue"
    statuses = await remote.send_commands(
        relay,
        hotel,
        who.user_id,
        requests,
        queue=queue,
        ttl_s=ttl_s,
        timeout_s=timeout_s,
        wait_s=0 if queue else timeout_s + 1.0,
        fleet_id=fleet_id,
    )
    statuses = await _unless_reused(relay, hotel_id, 0 if queue else timeout_s, statuses)
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    if not all(s.finished for s in statuses):
        response.status_code = 202
    return FleetOut(
        fleet_id=fleet_id,
        targeted=len(statuses),
        states=counts,
        commands=[_out(s) for s in statuses],
    )


async def _unless_reused(
    relay: Relay, hotel_id: str, wait_s: float, statuses: list[remote.CommandStatus]
) -> list[remote.CommandStatus]:
    """The statuses, or 409 command_id_reused when the gateway refused one because its id
    was used on the hotel LAN for another command (which the relay cannot know before it
    asks: the LAN's command reaches it as a result, without its name and parameters).
    Its row is gone (bridge/answers.results deletes it, on the answer's `id_reused` flag):
    the id's resource is the LAN's command alone. So a failed command whose row is gone
    is that refusal, and one whose row stands is a failure like any other, whatever its
    error's words (a device's own may read like the refusal).

    A result complete before its command was requested is of an earlier run of the id
    (on the LAN), which may be another command: the gateway's direct answer settles it
    within `wait_s` (for them all), the row done (the same command: its result) or gone
    (another: 409)."""
    deadline = asyncio.get_running_loop().time() + wait_s
    settled = []
    for given in statuses:
        earlier = given.completed_at is not None and given.completed_at < given.requested_at
        s = await _settle(relay, hotel_id, given, deadline) if earlier and wait_s > 0 else given
        settled.append(s)
    failed = [s.command_id for s in settled if s.state == "failed"]
    if failed:  # one look for them all, and none when nothing failed
        standing = {s.command_id for s in await remote.command_statuses(relay, hotel_id, failed)}
        for command_id in failed:
            if command_id not in standing:
                raise CommandIdReused.of(command_id)
    return settled


async def _settle(
    relay: Relay, hotel_id: str, status: remote.CommandStatus, deadline: float
) -> remote.CommandStatus:
    """`status` once the gateway has answered its command, by the loop's time `deadline`
    (see `_unless_reused`)."""
    loop = asyncio.get_running_loop()
    while True:
        # Short looks: a row deleted (the refusal) is never `done`, which is all
        # `until_done` waits for.
        done = await relay.downlink.until_done(
            hotel_id, status.command_id, max(0.0, min(0.1, deadline - loop.time()))
        )
        found = await remote.command_statuses(relay, hotel_id, [status.command_id])
        if not found:
            raise CommandIdReused.of(status.command_id)
        if done:
            return found[0]
        if loop.time() >= deadline:
            raise CommandTimedOut(
                "no answer from the gateway in time; the command may still run until its"
                f" expiry: follow /v1/hotels/{hotel_id}/commands/{status.command_id}"
            )


async def _select(relay: Relay, hotel_id: str, target: TargetIn, found: Access) -> list[str]:
    """The devices the target names that the caller may command, in id order. Only the
    devices the caller may see are matched and counted: one it may not see is answered
    as one that does not exist (404 when nothing else matches), never 403."""
    if not (
        target.all_devices or target.room_ids or target.floors or target.kinds or target.device_ids
    ):
        return []  # a target that names nothing matches nothing
    query = sa.select(devices.c.device_id, devices.c.room_id).where(devices.c.hotel_id == hotel_id)
    visible = found.visible_rooms(hotel_id)
    if visible is not None:
        query = query.where(devices.c.room_id.in_(sorted(visible)))
    if target.device_ids:
        query = query.where(devices.c.device_id.in_(target.device_ids))
    if target.room_ids:
        query = query.where(devices.c.room_id.in_(target.room_ids))
    if target.kinds:
        query = query.where(devices.c.kind.in_(target.kinds))
    async with relay.store.read() as conn:
        if target.floors:
            floor_rooms = sa.select(rooms.c.room_id).where(
                rooms.c.hotel_id == hotel_id, rooms.c.floor.in_(target.floors)
            )
            query = query.where(devices.c.room_id.in_(floor_rooms))
        rows = (await conn.execute(query.order_by(devices.c.device_id).limit(MAX_FLEET + 1))).all()
    if len(rows) > MAX_FLEET:
        raise Conflict(f"the target matches more than {MAX_FLEET} devices; send smaller fleets")
    allowed = [
        d
        for d, room in rows
        if found.can(Permission.SEND_COMMANDS, hotel_id=hotel_id, room_id=room)
    ]
    if rows and not allowed:
        raise Forbidden(f"needs {Permission.SEND_COMMANDS.value}")
    return allowed


@router.get(
    "/v1/hotels/{hotel_id}/commands/{command_id}",
    responses=responses(401, 404, 422),
    openapi_extra=READ,
)
async def get_command(
    hotel_id: str, command_id: str, relay: RelayDep, who: CallerDep
) -> CommandOut:
    """Where a command sent through the cloud stands, and its result once there is one."""
    _, found = await _hotel(relay, who.user_id, hotel_id)
    status = await remote.command_status(relay, hotel_id, command_id)
    async with relay.store.read() as conn:
        room = (
            await conn.execute(
                sa.select(devices.c.room_id).where(
                    devices.c.hotel_id == hotel_id, devices.c.device_id == status.device_id
                )
            )
        ).scalar()
    visible = found.visible_rooms(hotel_id)
    if visible is not None and room not in visible:
        raise NotFound("no such command")
    return _out(status)


@router.post(
    "/v1/hotels/{hotel_id}/alerts/{alert_id}/acknowledge",
    responses={
        202: {"model": AckOut, "description": "Queued for the gateway"},
        **responses(401, 403, 404, 422),
    },
    openapi_extra=ACK,
)
async def acknowledge_alert(
    hotel_id: str,
    alert_id: str,
    *,
    body: Annotated[AckIn | None, Body()] = None,
    relay: RelayDep,
    who: CallerDep,
    response: Response,
) -> AckOut:
    """Acknowledge an alert on the hotel's gateway, with the same id, who and when on both
    sides. Acknowledging an acknowledged or cleared alert is harmless and says so. The
    body is optional (no body: no note)."""
    hotel, found = await _hotel(relay, who.user_id, hotel_id)
    require_somewhere(found, Permission.ACKNOWLEDGE_ALERTS, hotel_id)
    async with relay.store.read() as conn:
        alert = (
            await conn.execute(
                sa.select(alerts).where(
                    alerts.c.hotel_id == hotel_id, alerts.c.alert_id == alert_id
                )
            )
        ).first()
    visible = found.visible_rooms(hotel_id)
    if alert is None or (visible is not None and alert.room_id not in visible):
        raise NotFound("no such alert")
    if not found.can(Permission.ACKNOWLEDGE_ALERTS, hotel_id=hotel_id, room_id=alert.room_id):
        raise Forbidden(f"needs {Permission.ACKNOWLEDGE_ALERTS.value}")
    outcome = await remote.acknowledge(
        relay,
        hotel,
        who.user_id,
        alert,
        "" if body is None else body.note,
        ttl_s=relay.config.command_queue_max_s,
    )
    if outcome == "queued":
        response.status_code = 202
    return AckOut(alert_id=alert_id, outcome=outcome)  # type: ignore[arg-type]
