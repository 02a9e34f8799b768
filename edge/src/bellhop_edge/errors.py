"""Errors of the edge gateway.

    EdgeError
     ├── ConfigError              invalid or missing configuration
     ├── AuthError                missing, malformed or rejected credentials
     │    └── PermissionDenied    valid credentials, not allowed to do this
     ├── NotFound                 no such room, device, alert or command
     ├── Conflict                 a version or idempotency-id clash
     ├── InvalidRequest           a request that can never succeed as sent
     ├── Unavailable              the broker is down or the gateway is overloaded
     └── DeadlineExceeded         the device did not answer in time

The gRPC API maps each to one status code in a single interceptor
(`bellhop_edge.api`); nothing else decides status codes.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(EdgeError):
    pass


class AuthError(EdgeError):
    pass


class PermissionDenied(AuthError):
    pass


class NotFound(EdgeError):
    pass


class Conflict(EdgeError):
    pass


class InvalidRequest(EdgeError):
    pass


class Unavailable(EdgeError):
    pass


class DeadlineExceeded(EdgeError):
    pass
