"""Bellhop mobile SDK: one client for the hotel's gateway on the LAN and the cloud relay.

    from bellhop_sdk import BellhopClient

    async with BellhopClient(cloud_url="https://relay.example", lan_target="10.0.0.5:7443") as c:
        await c.login("manager@example.com", "...")
        hotel_id = (await c.hotels())[0].hotel_id
        async for event in c.events(hotel_id):
            ...

`SyncBellhopClient` is the same client without an event loop. Every model carries
`freshness` (which path served it, as of when, stale since when); every error is a
`BellhopError` with the server's `code` and `message`.
"""

from bellhop_sdk.auth import CloudLogin, SessionTokens, StaticToken
from bellhop_sdk.client import BellhopClient
from bellhop_sdk.cloud import CloudTransport
from bellhop_sdk.errors import (
    BellhopError,
    CommandRejected,
    CommandTimedOut,
    Conflict,
    Forbidden,
    GatewayOffline,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthenticated,
    Unavailable,
    Unreachable,
    Unsupported,
)
from bellhop_sdk.lan import LanTransport
from bellhop_sdk.merge import EventMerger
from bellhop_sdk.models import (
    AckOutcome,
    AckResult,
    Alert,
    AlertState,
    Command,
    CommandStatus,
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
)
from bellhop_sdk.paths import PathSelector
from bellhop_sdk.sync import SyncBellhopClient
from bellhop_sdk.transport import (
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    TokenSource,
    Transport,
)

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "AckOutcome",
    "AckResult",
    "Alert",
    "AlertState",
    "BellhopClient",
    "BellhopError",
    "CloudLogin",
    "CloudTransport",
    "Command",
    "CommandRejected",
    "CommandStatus",
    "CommandTimedOut",
    "Conflict",
    "DesiredOutcome",
    "DesiredState",
    "Device",
    "Event",
    "EventMerger",
    "EventPage",
    "FleetCommand",
    "FleetTarget",
    "Forbidden",
    "Freshness",
    "Gap",
    "GatewayOffline",
    "Hotel",
    "InvalidRequest",
    "LanTransport",
    "NotFound",
    "Path",
    "PathSelector",
    "RateLimited",
    "Room",
    "ServerError",
    "SessionTokens",
    "StaticToken",
    "SyncBellhopClient",
    "TelemetryPoint",
    "TokenSource",
    "Transport",
    "Unauthenticated",
    "Unavailable",
    "Unreachable",
    "Unsupported",
    "Value",
]
