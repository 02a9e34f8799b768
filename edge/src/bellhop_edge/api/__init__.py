"""The gRPC LAN API for on-site staff.

interceptor    authentication and the one EdgeError -> status code table
servicer       `LanServicer`: protobuf <-> the gateway's domain calls
server         `start_server`: LanService, health and reflection
"""

from bellhop_edge.api.interceptor import STATUS_CODES, GatewayInterceptor, status_for
from bellhop_edge.api.server import start_server
from bellhop_edge.api.servicer import LanBackend, LanServicer

__all__ = [
    "STATUS_CODES",
    "GatewayInterceptor",
    "LanBackend",
    "LanServicer",
    "start_server",
    "status_for",
]
