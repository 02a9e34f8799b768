"""The cloud's live events (Server-Sent Events, docs/live-events.md) and the JSON
shapes the relay answers with, as SDK models.

How a stream continues, by what the relay says:

- `gap` (events may have been lost): a `Gap` is yielded; the stream goes on.
- `end` `token_expired`: the token is refreshed and the stream opened again
  after the last event id received, without the caller seeing anything.
- `end` `slow_consumer` or `shutting_down`, or the connection closed without
  an `end`: opened again after the last id (the relay replays what the log
  holds, or sends a `gap` if it no longer holds it).
- `end` `session_ended` -> `Unauthenticated`, `access_revoked` -> `Forbidden`,
  `unavailable` -> `Unavailable`; any other reason -> `BellhopError`.
- The relay cannot be reached (or reconnecting fails) -> `Unreachable`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Final

import httpx
from httpx_sse import ServerSentEvent

from bellhop_sdk.errors import (
    BellhopError,
    Forbidden,
    Unauthenticated,
    Unavailable,
    Unreachable,
)
from bellhop_sdk.models import (
    Alert,
    AlertState,
    Command,
    CommandStatus,
    Event,
    Freshness,
    Gap,
    Path,
    alert_data,
    alert_key,
    command_data,
    command_key,
    desired_key,
    device_key,
    plain,
    state_key,
    utc_ms,
)

__all__ = [
    "COMMAND_STATES",
    "alert_from_json",
    "command_from_json",
    "event_from_json",
    "freshness_of",
    "parse_time",
    "stream_events",
]

# The relay's command states as the SDK's (its "sent" is the LAN's "pending").
COMMAND_STATES: Final = {
    "queued": CommandStatus.QUEUED,
    "sent": CommandStatus.PENDING,
    "pending": CommandStatus.PENDING,
    "succeeded": CommandStatus.SUCCEEDED,
    "failed": CommandStatus.FAILED,
    "timed_out": CommandStatus.TIMED_OUT,
    "expired": CommandStatus.EXPIRED,
}
# Reconnections in a row that brought no event before the stream gives up.
MAX_EMPTY_RECONNECTS: Final = 3
_END_ERRORS: Final[dict[str, type[BellhopError]]] = {
    "session_ended": Unauthenticated,
    "access_revoked": Forbidden,
    "unavailable": Unavailable,
}
_RECONNECT: Final = frozenset({"token_expired", "slow_consumer", "shutting_down"})


def parse_time(text: str) -> datetime:
    """An ISO 8601 time of the relay (`…Z`) as UTC, to the millisecond."""
    return utc_ms(datetime.fromisoformat(text))


def opt_time(value: Any) -> datetime | None:
    return None if value is None else parse_time(str(value))


def now() -> datetime:
    return utc_ms(datetime.now(UTC))


def freshness_of(
    last_seen: datetime | None,
    stale: bool,
    *,
    online: bool = True,
    read_at: datetime | None = None,
    gateway_gone: datetime | None = None,
) -> Freshness:
    """How current the relay's copy is, from its own `last_seen` and `stale` flag.

    With a `last_seen`: as of then, stale since then when the relay says stale or the
    device is offline. Without one (the relay never recorded a contact): as of the read
    (`read_at`, default now); current when the relay says online and not stale,
    otherwise stale since the gateway's disconnect time when known (`gateway_gone`),
    else since the read.
    """
    if last_seen is not None:
        return Freshness(Path.CLOUD, last_seen, last_seen if stale or not online else None)
    read = read_at if read_at is not None else now()
    if online and not stale:
        return Freshness(Path.CLOUD, read)
    return Freshness(Path.CLOUD, read, gateway_gone if gateway_gone is not None else read)


def alert_from_json(hotel_id: str, a: Mapping[str, Any], freshness: Freshness) -> Alert:
    return Alert(
        hotel_id=hotel_id,
        alert_id=str(a["alert_id"]),
        kind=str(a["kind"]),
        severity=str(a["severity"]),
        state=AlertState(a["state"]),
        device_id=a.get("device_id") or None,
        room_id=a.get("room_id"),
        message=str(a.get("message") or ""),
        raised_at=parse_time(a["raised_at"]),
        freshness=freshness,
        acknowledged_at=opt_time(a.get("acknowledged_at")),
        acknowledged_by=a.get("acknowledged_by"),
        note=a.get("note") or None,
        cleared_at=opt_time(a.get("cleared_at")),
    )


def command_from_json(
    hotel_id: str,
    c: Mapping[str, Any],
    freshness: Freshness,
    params: Mapping[str, Any] | None = None,
) -> Command:
    """A CommandOut, or a `command` event's data (which has `status` for `state`)."""
    state = c.get("state", c.get("status"))
    return Command(
        hotel_id=hotel_id,
        command_id=str(c["command_id"]),
        device_id=str(c["device_id"]),
        name=str(c.get("name") or ""),
        status=COMMAND_STATES.get(str(state), CommandStatus.PENDING),
        freshness=freshness,
        params=dict(params or {}),
        result=None if c.get("result") is None else plain(dict(c["result"])),
        error=c.get("error"),
        completed_at=opt_time(c.get("completed_at")),
        requested_at=opt_time(c.get("requested_at")),
        expires_at=opt_time(c.get("expires_at")),
        requested_by=c.get("requested_by"),
    )


def event_from_json(body: Mapping[str, Any], event_id: str | None) -> Event:
    """One event of the relay's stream or page, with the natural key and normalised data
    the gateway's stream gives for the same change."""
    kind, hotel_id = str(body["kind"]), str(body["hotel_id"])
    room_id, at = body.get("room_id"), parse_time(body["at"])
    d: Mapping[str, Any] = body.get("data") or {}
    data: dict[str, Any] = dict(d)
    key: tuple[str, ...]
    if kind == "state":
        updated = parse_time(d["updated_at"])
        data = {"device_id": d["device_id"], "values": plain(d["values"]), "updated_at": updated}
        key, at = state_key(d["device_id"], updated), updated
    elif kind == "alert":
        alert = alert_from_json(hotel_id, d, Freshness(Path.CLOUD, at))
        data = alert_data(alert)
        key = alert_key(alert.alert_id, alert.state.value)
        at = alert.cleared_at or alert.acknowledged_at or alert.raised_at
    elif kind == "command":
        command = command_from_json(hotel_id, d, Freshness(Path.CLOUD, at))
        data = command_data(command)
        key = command_key(command.command_id, command.status.value)
        at = command.completed_at or at
    elif kind == "desired":
        updated_at = opt_time(d.get("updated_at"))
        data = {**data, "values": plain(d.get("values") or {}), "updated_at": updated_at}
        key, at = desired_key(d["device_id"], int(d["version"])), updated_at or at
    elif kind == "device":
        seen = opt_time(d.get("last_seen"))
        online = bool(d.get("online", False))
        data = {**data, "online": online, "last_seen": seen}
        key = device_key(d["device_id"], online, seen)
        if d.get("removed"):
            key = ("device", d["device_id"], "removed", event_id or "")
        at = seen or at
    else:  # gateway, and kinds a newer relay may add
        key = (kind, *(str(v) for v in d.values()), str(body["at"]))
    return Event(kind, key, hotel_id, room_id, at, data, Path.CLOUD, event_id)


Connect = Callable[[str | None], AbstractAsyncContextManager[AsyncIterator[ServerSentEvent]]]


async def stream_events(
    connect: Connect, refresh: Callable[[], Awaitable[str]], after: str | None
) -> AsyncIterator[Event | Gap]:
    """Events from `connect(last_event_id)` (an open SSE stream), reconnecting as the
    module's description says."""
    last_id, empty = after, 0
    while True:
        got_event = False
        reason: str | None = None
        try:
            async with connect(last_id) as source:
                async for sse in source:
                    if sse.event == "end":
                        reason = str(_json(sse.data).get("reason", "unknown"))
                        break
                    if sse.event == "gap":
                        g = _json(sse.data)
                        at = opt_time(g.get("at")) or now()
                        yield Gap("gap", at, Path.CLOUD, g.get("last_event_id") or last_id)
                        continue
                    if not sse.data:
                        continue
                    event = event_from_json(_json(sse.data), sse.id or None)
                    if sse.id:
                        last_id = sse.id
                    got_event = True
                    yield event
        except httpx.TransportError as exc:
            raise Unreachable(
                f"the event stream broke: {type(exc).__name__}: {exc}",
                code="unreachable",
                path=Path.CLOUD,
            ) from None
        if reason in _END_ERRORS:
            raise _END_ERRORS[reason](
                f"the relay ended the event stream: {reason}", code=reason, path=Path.CLOUD
            )
        if reason is not None and reason not in _RECONNECT:
            raise BellhopError(
                f"the relay ended the event stream: {reason}", code=reason, path=Path.CLOUD
            )
        if reason == "token_expired":
            await refresh()
        # A token's expiry ends even a quiet stream: only other closings count.
        empty = 0 if got_event or reason == "token_expired" else empty + 1
        if empty > MAX_EMPTY_RECONNECTS:
            raise Unreachable(
                f"the event stream closed {empty} times in a row without an event",
                code=reason or "closed",
                path=Path.CLOUD,
            )


def _json(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
