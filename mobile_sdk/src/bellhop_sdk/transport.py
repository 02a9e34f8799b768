"""What every path offers: the `Transport` protocol, and where tokens come from.

`LanTransport` (gRPC to the gateway) and `CloudTransport` (REST to the relay)
implement `Transport`; the client chooses between them. Every method raises
only `BellhopError` subclasses, `Unreachable` when the path's server cannot
be reached at all, and every call has a timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

from bellhop_sdk.errors import BellhopError
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
    Gap,
    Hotel,
    Path,
    Room,
    TelemetryPoint,
    Value,
)

__all__ = [
    "DEFAULT_COMMAND_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "TokenSlot",
    "TokenSource",
    "Transport",
]

# A call's own deadline when the caller gives none (commands add their wait to it).
DEFAULT_TIMEOUT_S = 10.0
# How long a command may take to be acknowledged by its device.
DEFAULT_COMMAND_TIMEOUT_S = 10.0


@runtime_checkable
class TokenSource(Protocol):
    """Gives the bearer token for a call.

    Transports call `token()` before each call; after an `Unauthenticated`
    answer they call `refresh()` once and retry the call once with its token.
    """

    async def token(self) -> str: ...

    async def refresh(self) -> str: ...


class Transport(Protocol):
    """One path to the hotel. All methods are async and raise only `BellhopError`s."""

    @property
    def path(self) -> Path: ...

    async def probe(self, timeout_s: float = 0.5) -> bool:
        """True when the server answers its health check within `timeout_s`; never raises."""
        ...

    async def list_hotels(self) -> list[Hotel]:
        """Hotels the caller can see (LAN: the gateway's one hotel)."""
        ...

    async def get_hotel(self, hotel_id: str) -> Hotel: ...

    async def list_rooms(self, hotel_id: str) -> list[Room]: ...

    async def list_devices(self, hotel_id: str, *, room_id: str | None = None) -> list[Device]: ...

    async def get_device(self, hotel_id: str, device_id: str) -> Device: ...

    async def get_desired(self, hotel_id: str, device_id: str) -> DesiredState: ...

    async def set_desired(
        self,
        hotel_id: str,
        device_id: str,
        values: Mapping[str, Value],
        *,
        expected_version: int | None = None,
    ) -> DesiredState:
        """Set desired fields (None removes one); `expected_version` guards against a
        concurrent change (LAN: refused on mismatch; cloud: the merge's base version)."""
        ...

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
        """Send a command and (with `wait`) return its result.

        Raises `CommandRejected` when the device reported an error and
        `CommandTimedOut` when it did not answer in time or the command expired.
        `command_id` is the idempotency key on every path: retry with the same id.
        """
        ...

    async def get_command(self, hotel_id: str, command_id: str) -> Command: ...

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
        """One command to many devices; per-device outcomes are in the answer, not raised."""
        ...

    async def list_alerts(
        self,
        hotel_id: str,
        *,
        active_only: bool = False,
        room_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]: ...

    async def acknowledge_alert(
        self, hotel_id: str, alert_id: str, *, note: str | None = None
    ) -> AckOutcome: ...

    async def telemetry(
        self,
        hotel_id: str,
        device_id: str,
        metric: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]: ...

    async def gateway_backlog(self, hotel_id: str) -> int | None:
        """Events the gateway holds that the cloud has not acknowledged (None if unknown)."""
        ...

    def events(
        self,
        hotel_id: str,
        *,
        room_id: str | None = None,
        after: str | None = None,
        on_open: Callable[[bool], object] | None = None,
    ) -> AsyncIterator[Event | Gap]:
        """Live events until the caller stops iterating; `after` resumes (cloud only).
        `on_open(confirmed)` is called each time the stream is open: `confirmed` when the
        server said every event from then on reaches it."""
        ...

    async def recent_events(
        self, hotel_id: str, *, limit: int = 100, after: str | None = None
    ) -> EventPage:
        """One page of the log's recent events (cloud only; the LAN raises Unsupported)."""
        ...

    async def aclose(self) -> None: ...


class TokenSlot:
    """The client's token source, shared by both transports; `login` swaps what is in it."""

    def __init__(self, source: TokenSource | None = None) -> None:
        self.source = source

    def _current(self) -> TokenSource:
        if self.source is None:
            raise BellhopError("no credentials: pass credentials= or call login()", code="")
        return self.source

    async def token(self) -> str:
        return await self._current().token()

    async def refresh(self) -> str:
        return await self._current().refresh()
