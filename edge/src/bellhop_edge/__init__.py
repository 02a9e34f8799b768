"""Bellhop's edge gateway: one hotel's devices, state and LAN API.

    from bellhop_edge import Gateway, load_config

    async with Gateway(load_config(Path("edge.toml"))) as gateway:
        await gateway.wait_closed()

The package's layout, one line per module, is in docs/architecture.md.
`Gateway` is imported on first use, so that `bellhop --help` and the CLI's
light commands do not load gRPC, MQTT and SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bellhop_edge.config import EdgeConfig, load_config
from bellhop_edge.errors import (
    AuthError,
    ConfigError,
    Conflict,
    DeadlineExceeded,
    EdgeError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    StoreError,
    Unavailable,
)

if TYPE_CHECKING:
    from bellhop_edge.gateway import Gateway
    from bellhop_edge.service import run

__all__ = [
    "AuthError",
    "ConfigError",
    "Conflict",
    "DeadlineExceeded",
    "EdgeConfig",
    "EdgeError",
    "Gateway",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "StoreError",
    "Unavailable",
    "load_config",
    "run",
]


def __getattr__(name: str) -> Any:
    if name == "Gateway":
        from bellhop_edge import gateway

        return gateway.Gateway
    if name == "run":
        from bellhop_edge import service

        return service.run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
