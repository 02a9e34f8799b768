"""Start the LAN API: the LanService, health and reflection on one gRPC server."""

from __future__ import annotations

import logging
from typing import Final

import grpc
from bellhop.lan.v1 import lan_pb2_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from bellhop_edge.api.interceptor import SERVICE, GatewayInterceptor
from bellhop_edge.api.servicer import LanBackend, LanServicer
from bellhop_edge.auth import Authenticator
from bellhop_edge.config import ApiConfig
from bellhop_edge.errors import Unavailable

__all__ = ["KEEPALIVE_OPTIONS", "LOOPBACK", "start_server"]

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
# Clients (the SDK) send keepalive pings on idle streams to notice a dead LAN link: accept
# them as often as once a second, also with no call open, instead of answering GOAWAY
# "too_many_pings" (the default allows one every five minutes, and only during a call).
KEEPALIVE_OPTIONS: Final = (
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 1),
)


async def start_server(
    backend: LanBackend, config: ApiConfig, authenticator: Authenticator
) -> tuple[grpc.aio.Server, int]:
    """Start the LAN API on `config.listen`; returns the server and the bound port."""
    anonymous = config.allow_unauthenticated_loopback and config.host in LOOPBACK
    server = grpc.aio.server(
        interceptors=[GatewayInterceptor(authenticator, allow_anonymous=anonymous)],
        options=KEEPALIVE_OPTIONS,
    )
    lan_pb2_grpc.add_LanServiceServicer_to_server(LanServicer(backend), server)
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
    log.info("LAN API listening on %s:%d", config.host, bound)
    return server, bound
