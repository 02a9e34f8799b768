"""The cloud path: the relay's REST API (docs/cloud-api.md) over httpx.

Every call carries `Authorization: Bearer <access token>` from a `TokenSource`
and a timeout. Problem documents (RFC 9457) become the SDK's errors with the
problem's `code` and `detail` (`cloud_errors.problem_error`); a relay that cannot be
reached (refused, reset, timed out, or a proxy's 502/503/504 without a
problem document) is `Unreachable`: the signal to try the LAN. Answers and events are
read within bounds (`cloud_read`): past them, `ServerError` `answer_too_large`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Any, Final

import httpx
from httpx_sse import ServerSentEvent

from bellhop_sdk.cloud_errors import problem_error, unreachable_error
from bellhop_sdk.cloud_events import (
    alert_from_json,
    command_from_json,
    event_from_json,
    freshness_of,
    now,
    opt_time,
    parse_time,
    stream_events,
)
from bellhop_sdk.cloud_read import MAX_ANSWER_BYTES, MAX_EVENT_BYTES, read_bounded, sse_bounded
from bellhop_sdk.errors import raise_for
from bellhop_sdk.models import (
    AckOutcome,
    AckResult,
    Alert,
    Command,
    DesiredOutcome,
    DesiredState,
    Device,
    Event,
    EventPage,
    FleetCommand,
    FleetTarget,
    Freshness,
    Gap,
    Hotel,
    Path,
    Room,
    TelemetryPoint,
    Value,
    plain,
    utc_ms,
)
from bellhop_sdk.transport import DEFAULT_COMMAND_TIMEOUT_S, DEFAULT_TIMEOUT_S, TokenSource

__all__ = ["CloudTransport", "problem_error"]

# The relay answers a waiting command within its timeout plus a second; allow the trip too.
COMMAND_MARGIN_S: Final = 3.0
# A stream's read may wait for two heartbeats (15 s each) before the relay is taken as gone.
STREAM_READ_S: Final = 35.0
PAGE: Final = 500
EARLIEST: Final = "1970-01-01T00:00:00Z"
LATEST: Final = "9999-12-31T00:00:00Z"


class CloudTransport:
    """The relay's REST API at `base_url`, authenticated by `tokens`."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trust_env: bool = True,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_event_bytes: int = MAX_EVENT_BYTES,
    ) -> None:
        """`trust_env`: take proxies from the environment (httpx's default). An answer's
        body longer than `max_answer_bytes`, or an event (or a line) of the live stream
        longer than `max_event_bytes`, is given up: `ServerError` `answer_too_large`."""
        self._base_url = base_url.rstrip("/")
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._max_answer = max_answer_bytes
        self._max_event = max_event_bytes
        self._http = httpx.AsyncClient(
            base_url=self._base_url, timeout=timeout_s, trust_env=trust_env
        )
        # When each hotel's gateway was last heard, for hotels the relay said were stale
        # (their gateway is away): a device never heard from is stale since then.
        self._gateway_gone: dict[str, datetime] = {}

    @property
    def path(self) -> Path:
        return Path.CLOUD

    @property
    def base_url(self) -> str:
        return self._base_url

    async def _request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> httpx.Response:
        """One call; after a 401, one retry with a refreshed token."""
        token = await self._tokens.token()
        for attempt in range(2):
            request = self._http.build_request(
                method,
                url,
                json=json,
                params=params,
                headers={**(headers or {}), "Authorization": f"Bearer {token}"},
                timeout=self._timeout_s if timeout_s is None else timeout_s,
            )
            try:
                sent = await self._http.send(request, stream=True)
                response = await read_bounded(sent, self._max_answer)
            except httpx.TransportError as exc:
                raise unreachable_error(exc) from None
            if response.status_code == 401 and attempt == 0:
                token = await self._tokens.refresh()
                continue
            if response.status_code >= 400:
                raise problem_error(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get(self, url: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return (await self._request("GET", url, params=clean)).json()

    async def _pages(self, url: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            body = await self._get(url, limit=PAGE, cursor=cursor, **params)
            items.extend(body["items"])
            cursor = body.get("next_cursor")
            if not cursor:
                return items

    async def probe(self, timeout_s: float = 0.5) -> bool:
        """GET /healthz (no token) answers 200 within `timeout_s`; never raises."""
        try:
            response = await self._http.get("/healthz", timeout=timeout_s)
        except Exception:  # a probe must never take the caller down
            return False
        return response.status_code == 200

    # -- hotels, rooms, devices --------------------------------------------------------
    async def list_hotels(self) -> list[Hotel]:
        hotels: list[Hotel] = []
        for org in await self._get("/v1/orgs"):
            hotels.extend(self._hotel(h) for h in await self._get(f"/v1/orgs/{org['id']}/hotels"))
        return hotels

    async def get_hotel(self, hotel_id: str) -> Hotel:
        return self._hotel(await self._get(f"/v1/hotels/{hotel_id}"))

    def _hotel(self, h: Mapping[str, Any]) -> Hotel:
        seen, stale = opt_time(h.get("last_seen")), bool(h.get("stale"))
        if stale and seen is not None:
            self._gateway_gone[h["id"]] = seen
        else:
            self._gateway_gone.pop(h["id"], None)
        return Hotel(
            hotel_id=h["id"],
            name=h["name"],
            freshness=freshness_of(seen, stale),
            org_id=h.get("org_id"),
            timezone=h.get("timezone"),
            last_seen=seen,
        )

    async def list_rooms(self, hotel_id: str) -> list[Room]:
        rooms = await self._pages(f"/v1/hotels/{hotel_id}/rooms")
        out = []
        for r in rooms:
            seen = opt_time(r.get("last_seen"))
            fresh = freshness_of(seen, bool(r.get("stale")))
            out.append(Room(hotel_id, r["room_id"], r["name"], r.get("floor"), fresh, seen))
        return out

    async def list_devices(self, hotel_id: str, *, room_id: str | None = None) -> list[Device]:
        devices = await self._pages(f"/v1/hotels/{hotel_id}/devices", room_id=room_id)
        return [self._device(hotel_id, d) for d in devices]

    async def get_device(self, hotel_id: str, device_id: str) -> Device:
        return self._device(hotel_id, await self._get(f"/v1/hotels/{hotel_id}/devices/{device_id}"))

    def _device(self, hotel_id: str, d: Mapping[str, Any]) -> Device:
        seen, online = opt_time(d.get("last_seen")), bool(d.get("online"))
        return Device(
            hotel_id=hotel_id,
            device_id=d["device_id"],
            room_id=d.get("room_id"),
            kind=str(d.get("kind") or "unspecified"),
            online=online,
            last_seen=seen,
            reported=plain(dict(d.get("state") or {})),
            freshness=freshness_of(
                seen,
                bool(d.get("stale")),
                online=online,
                gateway_gone=self._gateway_gone.get(hotel_id),
            ),
            firmware=d.get("firmware"),
        )

    async def get_desired(self, hotel_id: str, device_id: str) -> DesiredState:
        body = await self._get(f"/v1/hotels/{hotel_id}/devices/{device_id}/desired")
        return self._desired(hotel_id, body)

    def _desired(
        self, hotel_id: str, s: Mapping[str, Any], outcome: str | None = None
    ) -> DesiredState:
        # The relay's copy as read now; changes made on site reach it through the bridge.
        return DesiredState(
            hotel_id=hotel_id,
            device_id=s["device_id"],
            version=int(s["version"]),
            values=plain(dict(s.get("values") or {})),
            freshness=Freshness(Path.CLOUD, now()),
            updated_at=opt_time(s.get("updated_at")),
            updated_by=s.get("updated_by"),
            change_id=s.get("change_id"),
            outcomes=tuple(
                DesiredOutcome(
                    o["field"],
                    bool(o["applied"]),
                    str(o["reason"]),
                    plain(o.get("remote_value")),
                    plain(o.get("local_value")),
                )
                for o in s.get("outcomes") or []
            ),
            pending=tuple(s.get("pending") or ()),
            outcome=outcome,
        )

    async def set_desired(
        self,
        hotel_id: str,
        device_id: str,
        values: Mapping[str, Value],
        *,
        expected_version: int | None = None,
    ) -> DesiredState:
        """PUT the fields; merged on the gateway (`outcome` "merged"), or "queued" when
        the gateway did not answer within the relay's wait. `expected_version` is sent as
        the change's base version."""
        body: dict[str, Any] = {"values": dict(values)}
        if expected_version:
            body["base_version"] = expected_version
        response = await self._request(
            "PUT", f"/v1/hotels/{hotel_id}/devices/{device_id}/desired", json=body, timeout_s=20
        )
        answer = response.json()
        return self._desired(hotel_id, answer["desired"], str(answer["outcome"]))

    # -- commands ------------------------------------------------------------------------
    async def send_command(
        self,
        hotel_id: str,
        device_id: str,
        name: str,
        params: Mapping[str, Value] | None = None,
        *,
        command_id: str,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        wait: bool = True,
        ttl_s: float | None = None,
    ) -> Command:
        """`wait`: the result (raises CommandRejected / CommandTimedOut; 409
        `GatewayOffline` when the gateway is away); otherwise queued (202) and returned
        as it stands."""
        body: dict[str, Any] = {
            "name": name,
            "params": dict(params or {}),
            "command_id": command_id,
            "mode": "wait" if wait else "queue",
            "timeout_s": timeout_s,
        }
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        response = await self._request(
            "POST",
            f"/v1/hotels/{hotel_id}/devices/{device_id}/commands",
            json=body,
            timeout_s=timeout_s + COMMAND_MARGIN_S,
        )
        command = command_from_json(hotel_id, response.json(), Freshness(Path.CLOUD, now()), params)
        return raise_for(command) if wait else command

    async def get_command(self, hotel_id: str, command_id: str) -> Command:
        body = await self._get(f"/v1/hotels/{hotel_id}/commands/{command_id}")
        return command_from_json(hotel_id, body, Freshness(Path.CLOUD, now()))

    async def send_fleet_command(
        self,
        hotel_id: str,
        target: FleetTarget,
        name: str,
        params: Mapping[str, Value] | None = None,
        *,
        fleet_id: str,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        ttl_s: float | None = None,
    ) -> FleetCommand:
        """The relay sends to the devices every list of the target selects (their
        intersection); commands not finished in time are returned as they stand."""
        body: dict[str, Any] = {
            "name": name,
            "params": dict(params or {}),
            "fleet_id": fleet_id,
            "mode": "wait",
            "timeout_s": timeout_s,
            "target": {
                "room_ids": list(target.room_ids),
                "floors": list(target.floors),
                "kinds": list(target.kinds),
                "device_ids": list(target.device_ids),
                "all_devices": target.all_devices,
            },
        }
        if ttl_s is not None:
            body["ttl_s"] = ttl_s
        response = await self._request(
            "POST", f"/v1/hotels/{hotel_id}/commands", json=body, timeout_s=timeout_s + 10
        )
        answer = response.json()
        fresh = Freshness(Path.CLOUD, now())
        commands = tuple(command_from_json(hotel_id, c, fresh, params) for c in answer["commands"])
        return FleetCommand(hotel_id, answer["fleet_id"], int(answer["targeted"]), commands, fresh)

    # -- alerts, telemetry, status --------------------------------------------------------
    async def list_alerts(
        self,
        hotel_id: str,
        *,
        active_only: bool = False,
        room_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        """Newest first. The relay has no room filter: `room_id` filters the page read."""
        rows = await self._get(
            f"/v1/hotels/{hotel_id}/alerts", state="open" if active_only else None, limit=limit
        )
        fresh = Freshness(Path.CLOUD, now())
        alerts = [alert_from_json(hotel_id, a, fresh) for a in rows]
        return [a for a in alerts if room_id is None or a.room_id == room_id]

    async def acknowledge_alert(
        self, hotel_id: str, alert_id: str, *, note: str | None = None
    ) -> AckOutcome:
        """`outcome` as the relay says (acknowledged, queued, already_acknowledged,
        already_cleared); `alert` is None, its answer has none."""
        response = await self._request(
            "POST",
            f"/v1/hotels/{hotel_id}/alerts/{alert_id}/acknowledge",
            json={"note": note or ""},
            timeout_s=self._timeout_s + 5,
        )
        outcome = AckResult(response.json()["outcome"])
        return AckOutcome(hotel_id, alert_id, outcome, Freshness(Path.CLOUD, now()))

    async def telemetry(
        self,
        hotel_id: str,
        device_id: str,
        metric: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        """Raw points in [since, until), oldest first."""
        body = await self._get(
            f"/v1/hotels/{hotel_id}/devices/{device_id}/telemetry",
            metric=metric,
            start=EARLIEST if since is None else utc_ms(since).isoformat(),
            end=LATEST if until is None else utc_ms(until).isoformat(),
            limit=limit,
        )
        return [
            TelemetryPoint(device_id, metric, parse_time(p["ts"]), float(p["value"]))
            for p in body["points"]
        ]

    async def gateway_backlog(self, hotel_id: str) -> int | None:
        """What the gateway last reported it has not sent (None: no gateway link yet)."""
        links = await self._get(f"/v1/hotels/{hotel_id}/sync")
        if not links:
            return None
        return sum(int(link["backlog_events"]) for link in links)

    # -- events --------------------------------------------------------------------------
    def events(
        self,
        hotel_id: str,
        *,
        room_id: str | None = None,
        after: str | None = None,
        on_open: Callable[[bool], object] | None = None,
    ) -> AsyncIterator[Event | Gap]:
        """The hotel's live events (SSE), resumed after `after`; see `cloud_events` for
        how gaps and the stream's ends are handled. `room_id` filters what arrives.
        `on_open(True)` once the relay accepted each connection (it resumes by id, so
        nothing after the id it was given is missed)."""
        stream = stream_events(
            lambda last_id: self._connect(hotel_id, last_id, on_open), self._tokens.refresh, after
        )
        if room_id is None:
            return stream
        return _in_room(stream, room_id)

    @contextlib.asynccontextmanager
    async def _connect(
        self, hotel_id: str, last_id: str | None, on_open: Callable[[bool], object] | None
    ) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
        timeout = httpx.Timeout(self._timeout_s, read=STREAM_READ_S)
        url = f"/v1/hotels/{hotel_id}/events"
        token = await self._tokens.token()
        for attempt in range(2):
            headers = {"Authorization": f"Bearer {token}"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            headers.update({"Accept": "text/event-stream", "Cache-Control": "no-store"})
            try:
                async with self._http.stream(
                    "GET", url, headers=headers, timeout=timeout
                ) as response:
                    status = response.status_code
                    if status == 401 and attempt == 0:
                        await response.aclose()
                        token = await self._tokens.refresh()
                        continue
                    if status >= 400:
                        raise problem_error(await read_bounded(response, self._max_answer))
                    if on_open is not None:
                        on_open(True)
                    yield sse_bounded(response, self._max_event)
                    return
            except httpx.TransportError as exc:
                raise unreachable_error(exc) from None

    async def recent_events(
        self, hotel_id: str, *, limit: int = 100, after: str | None = None
    ) -> EventPage:
        """One JSON page: the events after `after`, or the newest without it."""
        headers = {"Accept": "application/json"}
        if after is not None:
            headers["Last-Event-ID"] = after
        response = await self._request(
            "GET", f"/v1/hotels/{hotel_id}/events", params={"limit": limit}, headers=headers
        )
        body = response.json()
        events = tuple(event_from_json(e, e.get("id")) for e in body["items"])
        return EventPage(events, bool(body["gap"]), body.get("last_event_id"))

    async def aclose(self) -> None:
        await self._http.aclose()


async def _in_room(stream: AsyncIterator[Event | Gap], room_id: str) -> AsyncIterator[Event | Gap]:
    async for item in stream:
        if isinstance(item, Gap) or item.room_id == room_id:
            yield item
