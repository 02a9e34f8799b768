"""One coroutine per `bellhop ctl` subcommand, on top of `BellhopClient`.

Each prints its answer through `Output` (a table, or one JSON document with --json)
with the path that served it and its freshness, and returns the exit code.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from bellhop_sdk import (
    BellhopClient,
    BellhopError,
    Command,
    CommandStatus,
    Device,
    Event,
    FleetTarget,
    Freshness,
    Gap,
    InvalidRequest,
    NotFound,
    Path,
    Unauthenticated,
    Value,
)

from bellhop_cli.ctl import session as saved
from bellhop_cli.ctl.output import Served, fmt_time, jsonable, served_by

if TYPE_CHECKING:
    from bellhop_cli.ctl.runner import Context

__all__ = ["HANDLERS", "PREPARE", "parse_params", "parse_time"]

_AGE: Final = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A fleet with a failed device exits as a rejected command would, one with a device that
# did not answer as a timed-out one (runner.EXIT_CODES).
EXIT_REJECTED: Final = 11
EXIT_TIMED_OUT: Final = 10


def parse_params(items: list[str]) -> dict[str, Value]:
    """`k=v` pairs; v is JSON when it parses as a scalar, otherwise the string itself."""
    params: dict[str, Value] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"--param {item!r}: expected K=V", code="bad_param")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, dict | list):
            value = raw
        params[key] = value
    return params


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (UTC if it names no zone) or an age before now: 30s, 15m, 2h, 1d."""
    if text is None:
        return None
    if match := _AGE.match(text.strip()):
        age = float(match[1]) * _UNITS[match[2]]
        return datetime.now(UTC) - timedelta(seconds=age)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{text!r}: not an ISO time nor an age", code="bad_time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _compact(values: Mapping[str, Any] | None) -> str:
    if not values:
        return "-"
    return " ".join(f"{k}={json.dumps(jsonable(v))}" for k, v in sorted(values.items()))


def _where(ctx: Context) -> dict[Path, str | None]:
    return {Path.LAN: ctx.lan_target, Path.CLOUD: ctx.cloud_url}


def _served(ctx: Context, client: BellhopClient, items: list[Freshness]) -> Served:
    return served_by(items, path=client.last_path, where=_where(ctx))


def _state(f: Freshness) -> str:
    return "fresh" if f.stale_since is None else f"stale since {fmt_time(f.stale_since)}"


# -- login and logout ----------------------------------------------------------------------
def _secret(ctx: Context, env: str, prompt: str) -> str:
    if ctx.args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if value := os.environ.get(env):
        return value
    return getpass.getpass(prompt)


def _prepare_login(ctx: Context) -> None:
    args = ctx.args
    if args.lan_token:
        if ctx.lan_target is None:
            raise InvalidRequest("--lan-token needs --lan HOST:PORT", code="no_path")
        ctx.secret = _secret(ctx, "BELLHOP_LAN_TOKEN", "LAN token: ")
    else:
        if ctx.cloud_url is None:
            raise InvalidRequest("login needs --cloud URL (or --lan-token)", code="no_path")
        if not args.email:
            args.email = input("e-mail: ").strip()
        ctx.secret = _secret(ctx, "BELLHOP_PASSWORD", "password: ")
    if not ctx.secret:
        raise InvalidRequest("an empty password or token", code="empty_secret")


async def login(ctx: Context) -> int:
    args = ctx.args
    if args.lan_token:
        session = saved.Session(lan_target=ctx.lan_target, lan_token=ctx.secret)
        ctx.session = session
        async with ctx.client() as client:  # check the token before keeping it
            hotels = await client.hotels()
        who = "LAN token"
    else:
        assert ctx.cloud_url is not None
        session = await saved.login(
            ctx.cloud_url, args.email, ctx.secret, timeout_s=args.call_timeout
        )
        session.lan_target = ctx.lan_target
        ctx.session = session
        async with ctx.client() as client:
            hotels = await client.hotels()
        who = args.email
    session.save(ctx.session_path)
    served = _served(ctx, client, [h.freshness for h in hotels])
    if ctx.out.as_json:
        data = {"who": who, "session_file": str(ctx.session_path), "hotels": len(hotels)}
        ctx.out.document("login", data, served)
    else:
        ctx.out.line(f"logged in as {who}; {len(hotels)} hotel(s); saved in {ctx.session_path}")
        ctx.out.line(served.line(), style="dim")
    return 0


async def logout(ctx: Context) -> int:
    session = ctx.session
    if session is None:
        raise Unauthenticated("not logged in", code="not_logged_in")
    try:
        await saved.logout(session, timeout_s=ctx.args.call_timeout)
    finally:
        ctx.session_path.unlink(missing_ok=True)
    if ctx.out.as_json:
        ctx.out.document("logout", {"session_file": str(ctx.session_path)}, None)
    else:
        ctx.out.line("logged out")
    return 0


# -- reads ---------------------------------------------------------------------------------
async def hotels(ctx: Context) -> int:
    async with ctx.client() as client:
        found = await client.hotels()
    served = _served(ctx, client, [h.freshness for h in found])
    if ctx.out.as_json:
        ctx.out.document("hotels", found, served)
        return 0
    rows = [(h.hotel_id, h.name, h.timezone, fmt_time(h.last_seen)) for h in found]
    ctx.out.table("hotels", ("hotel", "name", "timezone", "last seen"), rows, served)
    return 0


async def rooms(ctx: Context) -> int:
    async with ctx.client() as client:
        found = await client.rooms(ctx.args.hotel)
    served = _served(ctx, client, [r.freshness for r in found])
    if ctx.out.as_json:
        ctx.out.document("rooms", found, served)
        return 0
    rows = [(r.room_id, r.name, r.floor, fmt_time(r.last_seen)) for r in found]
    ctx.out.table(
        f"rooms of {ctx.args.hotel}", ("room", "name", "floor", "last seen"), rows, served
    )
    return 0


async def devices(ctx: Context) -> int:
    async with ctx.client() as client:
        found = await client.devices(ctx.args.hotel, room_id=ctx.args.room)
    served = _served(ctx, client, [d.freshness for d in found])
    if ctx.out.as_json:
        ctx.out.document("devices", found, served)
        return 0
    rows = [
        (
            d.device_id,
            d.room_id,
            d.kind,
            "online" if d.online else "offline",
            _compact(d.reported),
            _state(d.freshness),
        )
        for d in found
    ]
    columns = ("device", "room", "kind", "status", "reported", "freshness")
    ctx.out.table(f"devices of {ctx.args.hotel}", columns, rows, served)
    return 0


async def device_show(ctx: Context) -> int:
    hotel_id, device_id = ctx.args.hotel, ctx.args.device
    async with ctx.client() as client:
        device = await client.device(hotel_id, device_id)
        desired = device.desired
        if desired is None:  # the cloud's device read has none: ask for it
            try:
                desired = await client.desired(hotel_id, device_id)
            except NotFound:
                desired = None
    delta = dict(device.delta) or _delta(device, desired.values if desired else {})
    served = _served(ctx, client, [device.freshness])
    if ctx.out.as_json:
        data = {**jsonable(device), "desired": jsonable(desired), "delta": jsonable(delta)}
        ctx.out.document("device", data, served)
        return 0
    pairs = [
        ("kind", device.kind),
        ("room", device.room_id),
        ("status", "online" if device.online else "offline"),
        ("last seen", fmt_time(device.last_seen)),
        ("firmware", device.firmware),
        ("reported", _compact(device.reported)),
        ("reported at", fmt_time(device.reported_at) if device.reported_at else None),
        ("desired", _compact(desired.values) if desired else None),
        ("desired version", desired.version if desired else None),
        ("delta", _compact(delta)),
        ("freshness", _state(device.freshness)),
    ]
    ctx.out.fields(f"device {device_id} of {hotel_id}", pairs, served)
    return 0


def _delta(device: Device, desired: Mapping[str, Value]) -> dict[str, Value]:
    """Desired values the device does not report yet."""
    return {k: v for k, v in desired.items() if device.reported.get(k) != v}


async def alerts(ctx: Context) -> int:
    async with ctx.client() as client:
        found = await client.alerts(
            ctx.args.hotel, active_only=ctx.args.active, limit=ctx.args.limit
        )
    served = _served(ctx, client, [a.freshness for a in found])
    if ctx.out.as_json:
        ctx.out.document("alerts", found, served)
        return 0
    rows = [
        (
            a.alert_id,
            a.kind,
            a.severity,
            a.state.value,
            a.room_id,
            a.device_id,
            fmt_time(a.raised_at),
            a.acknowledged_by,
        )
        for a in found
    ]
    columns = ("alert", "kind", "severity", "state", "room", "device", "raised", "ack by")
    ctx.out.table(f"alerts of {ctx.args.hotel}", columns, rows, served)
    return 0


async def history(ctx: Context) -> int:
    args = ctx.args
    since, until = parse_time(args.since), parse_time(args.until)
    async with ctx.client() as client:
        points = await client.telemetry(
            args.hotel, args.device, args.metric, since=since, until=until, limit=args.limit
        )
    served = served_by([], path=client.last_path, where=_where(ctx))
    if ctx.out.as_json:
        ctx.out.document("history", points, served)
        return 0
    rows = [(fmt_time(p.at), p.value) for p in points]
    title = f"{args.metric} of {args.device} ({len(points)} points)"
    ctx.out.table(title, ("at", args.metric), rows, served)
    return 0


# -- writes --------------------------------------------------------------------------------
def _command_rows(commands: tuple[Command, ...] | list[Command]) -> list[tuple[Any, ...]]:
    return [
        (c.device_id, c.command_id, c.status.value, _compact(c.result), c.error) for c in commands
    ]


async def command(ctx: Context) -> int:
    args = ctx.args
    if args.ttl is not None and not args.queue:
        raise InvalidRequest("--ttl goes with --queue", code="bad_option")
    async with ctx.client() as client:
        sent = await client.send_command(
            args.hotel,
            args.device,
            args.name,
            parse_params(args.param),
            command_id=args.command_id,
            timeout_s=args.timeout,
            wait=not args.queue,
            ttl_s=args.ttl,
        )
    served = _served(ctx, client, [sent.freshness])
    if ctx.out.as_json:
        ctx.out.document("command", sent, served)
        return 0
    pairs = [
        ("command id", sent.command_id),
        ("status", sent.status.value),
        ("result", _compact(sent.result)),
        ("error", sent.error),
        ("completed", fmt_time(sent.completed_at) if sent.completed_at else None),
    ]
    ctx.out.fields(f"{args.name} on {args.device}", pairs, served)
    return 0


async def fleet(ctx: Context) -> int:
    from bellhop_cli.ctl.progress import FleetProgress

    args = ctx.args
    target = FleetTarget(
        room_ids=tuple(args.room or ()),
        floors=tuple(args.floor or ()),
        kinds=tuple(args.kind or ()),
        device_ids=tuple(args.device or ()),
        all_devices=args.all,
    )
    async with ctx.client() as client:
        total = await _targeted(client, args.hotel, target)
        with FleetProgress(ctx.out, args.name, total) as progress:
            answer = await client.fleet_command(
                args.hotel,
                target,
                args.name,
                parse_params(args.param),
                timeout_s=args.timeout,
                progress=progress.done,
            )
            progress.finish(answer.targeted)
    served = _served(ctx, client, [answer.freshness])
    if ctx.out.as_json:
        data = {**jsonable(answer), "counts": jsonable(answer.counts)}
        ctx.out.document("fleet", data, served)
    else:
        counts = ", ".join(f"{n} {s.value}" for s, n in sorted(answer.counts.items()))
        title = f"fleet {answer.fleet_id}: {args.name} to {answer.targeted} devices ({counts})"
        columns = ("device", "command", "status", "result", "error")
        ctx.out.table(title, columns, _command_rows(answer.commands), served)
    statuses = {c.status for c in answer.commands}
    if CommandStatus.FAILED in statuses:
        return EXIT_REJECTED
    if statuses & {CommandStatus.TIMED_OUT, CommandStatus.EXPIRED}:
        return EXIT_TIMED_OUT
    return 0


async def _targeted(client: BellhopClient, hotel_id: str, target: FleetTarget) -> int | None:
    """How many devices the target names, for the progress bar (None if unknown)."""
    try:
        found = await client.devices(hotel_id)
        floors: dict[str, int | None] = {}
        if target.floors:
            floors = {r.room_id: r.floor for r in await client.rooms(hotel_id)}
    except BellhopError:
        return None
    count = 0
    for d in found:
        if not d.registered:
            continue
        if (
            target.all_devices
            or d.device_id in target.device_ids
            or d.kind in target.kinds
            or (d.room_id is not None and d.room_id in target.room_ids)
            or (d.room_id is not None and floors.get(d.room_id) in target.floors)
        ):
            count += 1
    return count


async def ack(ctx: Context) -> int:
    args = ctx.args
    async with ctx.client() as client:
        outcome = await client.acknowledge_alert(args.hotel, args.alert, note=args.note)
    served = _served(ctx, client, [outcome.freshness])
    if ctx.out.as_json:
        ctx.out.document("ack", outcome, served)
        return 0
    ctx.out.line(f"alert {outcome.alert_id}: {outcome.outcome.value}")
    ctx.out.line(served.line(), style="dim")
    return 0


# -- events --------------------------------------------------------------------------------
async def follow(ctx: Context) -> int:
    args = ctx.args
    async with ctx.client() as client:
        ctx.out.note(f"following {args.hotel} (Ctrl-C to stop)")
        stream = client.events(args.hotel, room_id=args.room)
        try:
            async for item in stream:
                _print_event(ctx, item)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
    ctx.out.note("the event stream ended")
    return 0


def _print_event(ctx: Context, item: Event | Gap) -> None:
    where = _where(ctx).get(item.path)
    served = Served(item.path, where, item.at)
    if isinstance(item, Gap):
        if ctx.out.as_json:
            ctx.out.document("gap", item, served)
        else:
            ctx.out.line(
                f"--- gap at {fmt_time(item.at)} via {item.path.value.upper()}: {item.reason};"
                " events may be missing, read the current state again ---",
                style="bold yellow",
            )
        return
    if ctx.out.as_json:
        ctx.out.document("event", item, served)
        return
    subject = item.key[1] if len(item.key) > 1 else ""
    room = f" room {item.room_id}" if item.room_id else ""
    at = item.at.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
    ctx.out.line(
        f"{at}Z [{item.path.value.upper()}] {item.kind} {subject}{room} {_compact(item.data)}"
    )


Handler = Callable[["Context"], Awaitable[int]]
HANDLERS: Final[dict[str, Handler]] = {
    "login": login,
    "logout": logout,
    "hotels": hotels,
    "rooms": rooms,
    "devices": devices,
    "device show": device_show,
    "command": command,
    "fleet": fleet,
    "alerts": alerts,
    "ack": ack,
    "follow": follow,
    "history": history,
}
PREPARE: Final[dict[str, Callable[[Context], None]]] = {"login": _prepare_login}
