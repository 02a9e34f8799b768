"""Bellhop cloud relay: multi-tenant accounts, hotels, gateway enrolment and the REST API.

Entry points: `create_app(config)` builds the ASGI app, `load_config(path)` reads
the configuration, `Relay.open(config)` opens the services for embedding and
tests. Errors are rooted at `RelayError` (see `bellhop_cloud.errors`).
`create_app` and `Relay` are imported on first use, so that `bellhop --help`
does not load FastAPI, SQLAlchemy and the database drivers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bellhop_cloud.config import RelayConfig, load_config
from bellhop_cloud.errors import (
    AuthError,
    ConfigError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    RelayError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from bellhop_cloud.app import create_app
    from bellhop_cloud.relay import Relay

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "Relay",
    "RelayConfig",
    "RelayError",
    "StoreUnavailable",
    "create_app",
    "load_config",
]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from bellhop_cloud.app import create_app

        return create_app
    if name == "Relay":
        from bellhop_cloud.relay import Relay

        return Relay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
