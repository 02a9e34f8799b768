"""The LAN path: the hotel gateway's LanService over gRPC (grpc.aio).

Every call carries `authorization: Bearer <token>` metadata from a
`TokenSource` (a cloud access token the gateway verifies offline, or a
LAN-only `bht_` token) and a deadline. Status codes become the SDK's errors
one for one (`STATUS_ERRORS`, the inverse of the gateway's own table in
bellhop_edge/api/interceptor.py); UNAVAILABLE, and a deadline the gateway did
not answer within, are `Unreachable`: the signal to try the cloud.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Final

import grpc
from bellhop.common.v1 import common_pb2 as pb
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bellhop_sdk.errors import BellhopError, NotFound, Unsupported, raise_for
from bellhop_sdk.lan_convert import (
    STATUS_ERRORS,
    ack_outcome_of,
    alert_of,
    command_of,
    desired_of,
    device_of,
    duration_of,
    event_device,
    event_of,
    fleet_of,
    fleet_target_of,
    lan_error,
    listed_devices_of,
    looked_up_of,
    points_of,
    read_time,
    stamp_of,
    struct_of,
)
from bellhop_sdk.models import (
    AckOutcome,
    Alert,
    Command,
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
)
from bellhop_sdk.transport import DEFAULT_COMMAND_TIMEOUT_S, DEFAULT_TIMEOUT_S, TokenSource

__all__ = ["STATUS_ERRORS", "LanTransport", "lan_error"]

# What the gateway says when a watcher fell behind (bellhop_edge.bus.Lagging).
LAGGING: Final = "too slow to follow live events"
# A command's call waits this much longer than the device may take, for the round trip.
COMMAND_MARGIN_S: Final = 2.0
# Concurrent GetDevice calls when an older gateway's device list carries no state.
READ_CONCURRENCY: Final = 16
# WatchEvents' initial metadata once the gateway put the watcher on its event bus.
SUBSCRIBED_HEADER: Final = "bellhop-subscribed"
# How long a new stream waits for that header; a gateway that does not send it (an older
# one) sends its metadata with the first event, so the stream is reported open unconfirmed.
SUBSCRIBE_WAIT_S: Final = 2.0
# Keepalive pings: a LAN link that died without a word is noticed within
# `keepalive_s + keepalive_timeout_s` even on an idle stream (the gateway accepts pings
# once a second: bellhop_edge.api.server.KEEPALIVE_OPTIONS).
KEEPALIVE_S: Final = 10.0
KEEPALIVE_TIMEOUT_S: Final = 5.0


class LanTransport:
    """The gateway's LAN API at `target` ("host:port"), authenticated by `tokens`.

    The gateway serves one hotel; its id is learned from GetGatewayStatus on
    first use, and a call naming another hotel raises `NotFound`. The channel
    is made on first use, in the running event loop; it pings the gateway after
    `keepalive_s` without traffic and gives the link up when no answer comes within
    `keepalive_timeout_s` (a stream then fails with `Unreachable`).
    """

    def __init__(
        self,
        target: str,
        tokens: TokenSource,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        keepalive_s: float = KEEPALIVE_S,
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ) -> None:
        self._target = target
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._options = (
            ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(keepalive_timeout_s * 1000)),
            # grpcio 1.85 fails the link on an unanswered ping only with this one set.
            ("grpc.http2.ping_timeout_ms", int(keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            # Keep pinging however long a stream carries no data (the default stops at 2).
            ("grpc.http2.max_pings_without_data", 0),
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: lan_pb2_grpc.LanServiceAsyncStub | None = None
        self._hotel_id: str | None = None

    @property
    def path(self) -> Path:
        return Path.LAN

    @property
    def target(self) -> str:
        return self._target

    def _lan(self) -> lan_pb2_grpc.LanServiceAsyncStub:
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            self._stub = lan_pb2_grpc.LanServiceStub(self._channel)
        return self._stub

    async def _call(
        self,
        method: Callable[[lan_pb2_grpc.LanServiceAsyncStub], Any],
        request: Any,
        *,
        timeout_s: float | None = None,
    ) -> Any:
        """One unary call with a deadline; after UNAUTHENTICATED, one retry with a new token."""
        stub = self._lan()
        deadline = self._timeout_s if timeout_s is None else timeout_s
        token = await self._tokens.token()
        for attempt in range(2):
            try:
                call: Awaitable[Any] = method(stub)(
                    request, metadata=(("authorization", f"Bearer {token}"),), timeout=deadline
                )
                return await call
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED and attempt == 0:
                    token = await self._tokens.refresh()
                    continue
                raise lan_error(exc) from None
            except grpc.RpcError as exc:
                raise lan_error(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def probe(self, timeout_s: float = 0.5) -> bool:
        """The standard gRPC health check, which needs no token; never raises."""
        self._lan()
        assert self._channel is not None
        try:
            health = health_pb2_grpc.HealthStub(self._channel)
            answer = await health.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return False
        except Exception:  # a probe must never take the caller down
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def _check_hotel(self, hotel_id: str) -> None:
        if self._hotel_id is None:
            await self._status()
        if hotel_id != self._hotel_id:
            raise NotFound(
                f"this gateway serves hotel {self._hotel_id!r}, not {hotel_id!r}",
                code="NOT_FOUND",
                path=Path.LAN,
            )

    async def _status(self) -> lan_pb2.GetGatewayStatusResponse:
        status: lan_pb2.GetGatewayStatusResponse = await self._call(
            lambda s: s.GetGatewayStatus, lan_pb2.GetGatewayStatusRequest()
        )
        self._hotel_id = status.hotel_id
        return status

    # -- hotels, rooms, devices --------------------------------------------------------
    async def list_hotels(self) -> list[Hotel]:
        status = await self._status()
        return [self._hotel(status.hotel_id)]

    async def get_hotel(self, hotel_id: str) -> Hotel:
        await self._status()
        await self._check_hotel(hotel_id)
        return self._hotel(hotel_id)

    def _hotel(self, hotel_id: str) -> Hotel:
        now = read_time()
        # The gateway holds no name or time zone of its hotel: the id stands for the name.
        return Hotel(hotel_id, hotel_id, Freshness(Path.LAN, now), last_seen=now)

    async def list_rooms(self, hotel_id: str) -> list[Room]:
        await self._check_hotel(hotel_id)
        answer = await self._call(lambda s: s.ListRooms, lan_pb2.ListRoomsRequest())
        now = read_time()
        return [
            Room(hotel_id, r.room_id, r.name or r.room_id, r.floor, Freshness(Path.LAN, now))
            for r in answer.rooms
        ]

    async def list_devices(self, hotel_id: str, *, room_id: str | None = None) -> list[Device]:
        """Devices with their state, in one ListDevices call; a gateway that predates
        `include_state` answers the list alone, and each device is then read with
        GetDevice, at most `READ_CONCURRENCY` at once."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.ListDevicesRequest(room_id=room_id or "", include_state=True)
        answer = await self._call(lambda s: s.ListDevices, request)
        listed = listed_devices_of(hotel_id, answer)
        if listed is not None:
            return listed
        limit = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(device_id: str) -> Device | None:
            async with limit:
                try:
                    return await self.get_device(hotel_id, device_id)
                except NotFound:  # removed between the list and the read
                    return None

        read = await asyncio.gather(*(one(d.device_id) for d in answer.devices))
        return [d for d in read if d is not None]

    async def get_device(self, hotel_id: str, device_id: str) -> Device:
        await self._check_hotel(hotel_id)
        answer = await self._call(
            lambda s: s.GetDevice, lan_pb2.GetDeviceRequest(device_id=device_id)
        )
        return device_of(hotel_id, answer)

    async def get_desired(self, hotel_id: str, device_id: str) -> DesiredState:
        device = await self.get_device(hotel_id, device_id)
        if device.desired is not None:
            return device.desired
        return DesiredState(hotel_id, device_id, 0, {}, Freshness(Path.LAN, read_time()))

    async def set_desired(
        self,
        hotel_id: str,
        device_id: str,
        values: Mapping[str, Value],
        *,
        expected_version: int | None = None,
    ) -> DesiredState:
        """Set fields on the gateway; a version other than `expected_version` is `Conflict`."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.SetDesiredStateRequest(
            device_id=device_id, values=struct_of(values), expected_version=expected_version or 0
        )
        answer = await self._call(lambda s: s.SetDesiredState, request)
        return desired_of(hotel_id, answer.desired)

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
        """Send and wait for the device's answer (the gateway always waits: `wait` is
        accepted for the protocol's sake). Raises CommandRejected / CommandTimedOut."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.SendCommandRequest(
            device_id=device_id,
            name=name,
            params=struct_of(params),
            command_id=command_id,
            timeout=duration_of(timeout_s),
        )
        if ttl_s is not None:
            request.ttl.CopyFrom(duration_of(ttl_s))
        answer = await self._call(
            lambda s: s.SendCommand, request, timeout_s=timeout_s + COMMAND_MARGIN_S
        )
        command = command_of(hotel_id, answer.result, name, params)
        return raise_for(command)

    async def get_command(self, hotel_id: str, command_id: str) -> Command:
        """A command from the gateway's history, whichever path sent it (`NotFound` if
        the gateway has no record of it)."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.GetCommandRequest(command_id=command_id)
        return looked_up_of(hotel_id, await self._call(lambda s: s.GetCommand, request))

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
        """The gateway sends to every device the target selects: within a list any value,
        across the lists all of them (the cloud's rule too)."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.SendFleetCommandRequest(
            target=fleet_target_of(target),
            name=name,
            params=struct_of(params),
            fleet_id=fleet_id,
            timeout=duration_of(timeout_s),
        )
        if ttl_s is not None:
            request.ttl.CopyFrom(duration_of(ttl_s))
        # Devices are commanded a bounded number at a time: allow a few rounds.
        answer = await self._call(
            lambda s: s.SendFleetCommand, request, timeout_s=timeout_s * 4 + COMMAND_MARGIN_S
        )
        return fleet_of(hotel_id, answer, name, params)

    # -- alerts, telemetry, status --------------------------------------------------------
    async def list_alerts(
        self,
        hotel_id: str,
        *,
        active_only: bool = False,
        room_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        await self._check_hotel(hotel_id)
        states = [pb.ALERT_STATE_RAISED, pb.ALERT_STATE_ACKNOWLEDGED] if active_only else []
        request = lan_pb2.ListAlertsRequest(states=states, room_id=room_id or "", limit=limit)
        answer = await self._call(lambda s: s.ListAlerts, request)
        return [alert_of(hotel_id, a) for a in answer.alerts]

    async def acknowledge_alert(
        self, hotel_id: str, alert_id: str, *, note: str | None = None
    ) -> AckOutcome:
        """Acknowledge on the gateway, which says what happened (as the cloud does):
        acknowledged, already acknowledged (the alert keeps the first who and when) or
        already cleared; the answer carries the alert as it stands."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.AcknowledgeAlertRequest(alert_id=alert_id, note=note or "")
        answer = await self._call(lambda s: s.AcknowledgeAlert, request)
        return ack_outcome_of(hotel_id, alert_id, answer)

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
        """Points in [since, until), oldest first."""
        await self._check_hotel(hotel_id)
        request = lan_pb2.QueryTelemetryRequest(device_id=device_id, metric=metric, limit=limit)
        if since is not None:
            request.start.CopyFrom(stamp_of(since))
        if until is not None:
            request.end.CopyFrom(stamp_of(until))
        return points_of(await self._call(lambda s: s.QueryTelemetry, request))

    async def gateway_backlog(self, hotel_id: str) -> int | None:
        await self._check_hotel(hotel_id)
        status = await self._status()
        return int(status.cloud_backlog)

    # -- events --------------------------------------------------------------------------
    async def events(
        self,
        hotel_id: str,
        *,
        room_id: str | None = None,
        after: str | None = None,
        on_open: Callable[[bool], object] | None = None,
    ) -> AsyncIterator[Event | Gap]:
        """The gateway's WatchEvents as SDK events, until the caller stops iterating.

        Kinds: state, alert, command, device (connectivity), as `event_of` maps
        them; the gateway has no desired-state events. `after` is ignored: the
        gateway keeps no log to resume from. Falling behind yields a `Gap` and the
        stream is opened again; losing the gateway raises `Unreachable`.
        `on_open(confirmed)` is called each time the stream is open: `True` once the
        gateway said every event from then on reaches it (its `bellhop-subscribed`
        header), `False` when it did not say so within `SUBSCRIBE_WAIT_S`.
        """
        await self._check_hotel(hotel_id)
        rooms = await self._room_map()
        while True:
            call = None
            try:
                token = await self._tokens.token()
                call = self._lan().WatchEvents(
                    lan_pb2.WatchEventsRequest(room_id=room_id or ""),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
                confirmed = await _subscribed(call)
                if on_open is not None and confirmed is not None:
                    on_open(confirmed)
                async for message in call:
                    device_id = event_device(message)
                    if device_id is not None:
                        await self._room_of(device_id, rooms)
                    event = event_of(hotel_id, message, rooms)
                    if event is not None:
                        yield event
                return  # the gateway ended the stream (it is stopping)
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE and LAGGING in (exc.details() or ""):
                    yield Gap("slow_consumer", read_time(), Path.LAN)
                    continue
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    await self._tokens.refresh()
                    try:
                        await self._status()  # the new token works, or the error is the answer
                    except BellhopError:
                        raise lan_error(exc) from None
                    yield Gap("token_refreshed", read_time(), Path.LAN)
                    continue
                raise lan_error(exc) from None
            finally:
                if call is not None:
                    call.cancel()

    async def _room_map(self) -> dict[str, str | None]:
        answer = await self._call(
            lambda s: s.ListDevices, lan_pb2.ListDevicesRequest(include_unknown=True)
        )
        return {d.device_id: d.room_id or None for d in answer.devices}

    async def _room_of(self, device_id: str, rooms: dict[str, str | None]) -> str | None:
        if device_id not in rooms:
            rooms.update(await self._room_map())
            rooms.setdefault(device_id, None)  # asked once per unknown device
        return rooms[device_id]

    async def recent_events(
        self, hotel_id: str, *, limit: int = 100, after: str | None = None
    ) -> EventPage:
        raise Unsupported("the gateway keeps no event log", code="UNSUPPORTED", path=Path.LAN)

    async def aclose(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()


async def _subscribed(call: Any) -> bool | None:
    """Whether the gateway confirmed the stream's subscription (its initial metadata holds
    `SUBSCRIBED_HEADER`); False when it said nothing within `SUBSCRIBE_WAIT_S` or sent
    metadata without it; None when the call ended first (reading it raises why)."""
    waiter = asyncio.ensure_future(call.initial_metadata())
    done, _ = await asyncio.wait({waiter}, timeout=SUBSCRIBE_WAIT_S)
    if not done:
        waiter.cancel()  # the metadata comes with the first event then; the call goes on
        return False
    if waiter.exception() is None and any(k == SUBSCRIBED_HEADER for k, _ in waiter.result()):
        return True
    return None if call.done() else False
