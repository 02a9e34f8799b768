"""The gRPC LAN API: a thin adapter over the gateway.

One interceptor authenticates every call (bearer token, verified locally)
and maps the gateway's errors to gRPC status codes; the servicer only
translates between protobuf and the gateway's domain calls. The standard
health and reflection services are served beside it without a token, so
monitoring and tooling work as usual.
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bellhop_edge import convert
from bellhop_edge.auth import Authenticator, Principal, Role
from bellhop_edge.bus import Lagging
from bellhop_edge.commands import expiring_request, fleet_command_id, new_command_id, now_ms
from bellhop_edge.errors import (
    AuthError,
    Conflict,
    DeadlineExceeded,
    EdgeError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from bellhop_edge.model import CommandStatus

if TYPE_CHECKING:
    from bellhop_edge.app import Gateway

log = logging.getLogger(__name__)

SERVICE = lan_pb2.DESCRIPTOR.services_by_name["LanService"].full_name
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")

STATUS_CODES: list[tuple[type[EdgeError], grpc.StatusCode]] = [
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (AuthError, grpc.StatusCode.UNAUTHENTICATED),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (Conflict, grpc.StatusCode.ABORTED),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
]


def status_for(exc: EdgeError) -> grpc.StatusCode:
    for kind, code in STATUS_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


class GatewayInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates LanService calls and maps EdgeError to status codes."""

    def __init__(self, authenticator: Authenticator, *, allow_anonymous: bool = False) -> None:
        self._auth = authenticator
        self._allow_anonymous = allow_anonymous

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(f"/{SERVICE}/"):
            return handler
        metadata = dict(details.invocation_metadata or ())
        raw = metadata.get("authorization")
        authorization = raw.decode() if isinstance(raw, bytes) else raw

        def principal_or_abort() -> Principal:
            if authorization is None and self._allow_anonymous:
                return Principal("loopback", Role.ADMIN, "anonymous")
            return self._auth.authenticate(authorization)

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                try:
                    _principal.set(principal_or_abort())
                    return await inner(request, context)
                except EdgeError as exc:
                    await context.abort(status_for(exc), str(exc))

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream = handler.unary_stream

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                try:
                    _principal.set(principal_or_abort())
                    async for item in inner_stream(request, context):
                        yield item
                except EdgeError as exc:
                    await context.abort(status_for(exc), str(exc))

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def principal() -> Principal:
    return _principal.get()


class LanServicer(lan_pb2_grpc.LanServiceServicer):
    def __init__(self, gateway: Gateway) -> None:
        self._gw = gateway

    async def ListRooms(
        self, request: lan_pb2.ListRoomsRequest, context: Any
    ) -> lan_pb2.ListRoomsResponse:
        principal().require(Role.VIEWER, "reading rooms")
        rooms = sorted(self._gw.hotel.rooms.values(), key=lambda r: r.room_id)
        return lan_pb2.ListRoomsResponse(rooms=[convert.room(r) for r in rooms])

    async def ListDevices(
        self, request: lan_pb2.ListDevicesRequest, context: Any
    ) -> lan_pb2.ListDevicesResponse:
        principal().require(Role.VIEWER, "reading devices")
        devices = self._gw.hotel.list_devices(
            request.room_id or None, include_unknown=request.include_unknown
        )
        return lan_pb2.ListDevicesResponse(devices=[convert.device(d) for d in devices])

    async def GetDevice(
        self, request: lan_pb2.GetDeviceRequest, context: Any
    ) -> lan_pb2.GetDeviceResponse:
        principal().require(Role.VIEWER, "reading devices")
        hotel = self._gw.hotel
        device = hotel.device(request.device_id)
        reported = hotel.reported.get(device.device_id)
        desired = hotel.desired.get(device.device_id)
        return lan_pb2.GetDeviceResponse(
            device=convert.device(device),
            reported=convert.reported(reported) if reported else None,
            desired=convert.desired(desired) if desired else None,
            delta=convert.struct(hotel.delta(device.device_id)),
        )

    async def SetDesiredState(
        self, request: lan_pb2.SetDesiredStateRequest, context: Any
    ) -> lan_pb2.SetDesiredStateResponse:
        who = principal()
        who.require(Role.STAFF, "changing desired state")
        state = self._gw.set_desired(
            request.device_id,
            convert.from_struct(request.values),
            by=who.subject,
            expected_version=request.expected_version,
        )
        return lan_pb2.SetDesiredStateResponse(desired=convert.desired(state))

    async def SendCommand(
        self, request: lan_pb2.SendCommandRequest, context: Any
    ) -> lan_pb2.SendCommandResponse:
        who = principal()
        who.require(Role.STAFF, "sending commands")
        if not request.device_id or not request.name:
            raise InvalidRequest("device_id and name are required")
        ttl, timeout = self._ttl_and_timeout(request, context)
        command = expiring_request(
            device_id=request.device_id,
            name=request.name,
            params=convert.from_struct(request.params),
            ttl_s=ttl,
            command_id=request.command_id or None,
            requested_by=who.subject,
        )
        record = await self._gw.send_command(command, timeout=timeout)
        return lan_pb2.SendCommandResponse(result=convert.command_result(record.result))

    async def SendFleetCommand(
        self, request: lan_pb2.SendFleetCommandRequest, context: Any
    ) -> lan_pb2.SendFleetCommandResponse:
        who = principal()
        who.require(Role.STAFF, "sending commands")
        if not request.name:
            raise InvalidRequest("name is required")
        target = request.target
        kinds = [
            convert.DEVICE_KINDS_BACK[k] for k in target.kinds if k in convert.DEVICE_KINDS_BACK
        ]
        devices = self._gw.hotel.select(
            room_ids=target.room_ids,
            floors=target.floors,
            kinds=kinds,
            device_ids=target.device_ids,
            all_devices=target.all_devices,
        )
        if not devices:
            raise InvalidRequest("the target matches no registered device")
        ttl, timeout = self._ttl_and_timeout(request, context)
        fleet_id = request.fleet_id or new_command_id()
        params = convert.from_struct(request.params)
        now = now_ms()
        requests = [
            expiring_request(
                device_id=device_id,
                name=request.name,
                params=params,
                ttl_s=ttl,
                command_id=fleet_command_id(fleet_id, device_id),
                requested_by=who.subject,
                now=now,
            )
            for device_id in devices
        ]
        limit = request.max_in_flight or self._gw.config.commands.fleet_max_in_flight
        records = await self._gw.send_fleet(requests, timeout=timeout, max_in_flight=limit)
        statuses = Counter(r.result.status for r in records)
        return lan_pb2.SendFleetCommandResponse(
            fleet_id=fleet_id,
            targeted=len(records),
            succeeded=statuses[CommandStatus.SUCCEEDED],
            failed=statuses[CommandStatus.FAILED],
            timed_out=statuses[CommandStatus.TIMED_OUT],
            expired=statuses[CommandStatus.EXPIRED],
            results=[convert.command_result(r.result) for r in records],
        )

    def _ttl_and_timeout(self, request: Any, context: Any) -> tuple[float, float]:
        """The command's ttl and how long to wait, within the caller's own deadline."""
        config = self._gw.config.commands
        ttl = (
            request.ttl.ToTimedelta().total_seconds()
            if request.HasField("ttl")
            else config.default_ttl_s
        )
        timeout = (
            request.timeout.ToTimedelta().total_seconds()
            if request.HasField("timeout")
            else config.default_timeout_s
        )
        if ttl <= 0 or timeout <= 0:
            raise InvalidRequest("ttl and timeout must be positive")
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining - 0.05, 0.01))
        return ttl, min(timeout, config.max_timeout_s)

    async def ListAlerts(
        self, request: lan_pb2.ListAlertsRequest, context: Any
    ) -> lan_pb2.ListAlertsResponse:
        principal().require(Role.VIEWER, "reading alerts")
        states = [
            convert.ALERT_STATES_BACK[s] for s in request.states if s in convert.ALERT_STATES_BACK
        ]
        alerts = self._gw.list_alerts(states, request.room_id or None, request.limit or 100)
        return lan_pb2.ListAlertsResponse(alerts=[convert.alert(a) for a in alerts])

    async def AcknowledgeAlert(
        self, request: lan_pb2.AcknowledgeAlertRequest, context: Any
    ) -> lan_pb2.AcknowledgeAlertResponse:
        who = principal()
        who.require(Role.STAFF, "acknowledging alerts")
        alert = self._gw.acknowledge_alert(request.alert_id, by=who.subject, note=request.note)
        return lan_pb2.AcknowledgeAlertResponse(alert=convert.alert(alert))

    async def QueryTelemetry(
        self, request: lan_pb2.QueryTelemetryRequest, context: Any
    ) -> lan_pb2.QueryTelemetryResponse:
        principal().require(Role.VIEWER, "reading telemetry")
        if not request.device_id or not request.metric:
            raise InvalidRequest("device_id and metric are required")
        start = request.start.ToMilliseconds() if request.HasField("start") else 0
        end = request.end.ToMilliseconds() if request.HasField("end") else 2**62
        limit = min(request.limit or 1000, 10_000)
        points = await self._gw.query_telemetry(
            request.device_id, request.metric, start, end, limit
        )
        return lan_pb2.QueryTelemetryResponse(points=[convert.telemetry(p) for p in points])

    async def WatchEvents(
        self, request: lan_pb2.WatchEventsRequest, context: Any
    ) -> AsyncIterator[lan_pb2.WatchEventsResponse]:
        principal().require(Role.VIEWER, "watching events")
        subscription = self._gw.bus.subscribe(request.room_id or None)
        try:
            async for item in subscription:
                yield item
        except Lagging as exc:
            raise Unavailable(str(exc)) from None
        finally:
            self._gw.bus.unsubscribe(subscription)

    async def GetGatewayStatus(
        self, request: lan_pb2.GetGatewayStatusRequest, context: Any
    ) -> lan_pb2.GetGatewayStatusResponse:
        principal().require(Role.VIEWER, "reading gateway status")
        return self._gw.status_message()


async def start_server(
    gateway: Gateway, authenticator: Authenticator
) -> tuple[grpc.aio.Server, int]:
    """Start the LAN API on the configured address; returns the bound port."""
    config = gateway.config.api
    host = config.listen.rpartition(":")[0]
    anonymous = config.allow_unauthenticated_loopback and host in (
        "127.0.0.1",
        "localhost",
        "[::1]",
    )
    server = grpc.aio.server(
        interceptors=[GatewayInterceptor(authenticator, allow_anonymous=anonymous)]
    )
    lan_pb2_grpc.add_LanServiceServicer_to_server(LanServicer(gateway), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        bound = server.add_insecure_port(config.listen)
    except RuntimeError:  # grpcio raises where older releases returned 0
        bound = 0
    if bound == 0:
        raise Unavailable(f"cannot listen on {config.listen} (address in use or not local)")
    await server.start()
    log.info("LAN API listening on %s:%d", host, bound)
    return server, bound
