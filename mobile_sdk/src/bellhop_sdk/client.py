"""`BellhopClient`: one client for the hotel's gateway on the LAN and the cloud relay.

    async with BellhopClient(cloud_url=..., lan_target="10.0.0.5:7443") as client:
        await client.login("manager@example.com", "...")
        for device in await client.devices(hotel_id):
            print(device.device_id, device.reported, device.freshness.path)

Every call goes to the LAN when the hotel's gateway answers there (a health probe with a
short deadline decides, never a guess), and to the cloud otherwise; a call that finds its
path unreachable is sent again at once over the other one (a command keeps its id, so it
runs once). `client.last_path` and every model's `freshness.path` say which path served.
The LAN path serves only the gateway's own hotel. Path choice is `paths.PathSelector`;
the event stream across switches is `client_events` with `merge.EventMerger`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from bellhop_sdk.client_events import Follower, follow_events, report_fleet
from bellhop_sdk.errors import (
    MALFORMED,
    BellhopError,
    NotFound,
    Unreachable,
    Unsupported,
    ids_checked,
    malformed,
)
from bellhop_sdk.ids import new_command_id, new_fleet_id
from bellhop_sdk.models import (
    AckOutcome,
    Alert,
    Command,
    DesiredState,
    Device,
    Event,
    FleetCommand,
    FleetTarget,
    Gap,
    Hotel,
    Path,
    Room,
    TelemetryPoint,
    Value,
)
from bellhop_sdk.paths import LanState, PathSelector, Switch
from bellhop_sdk.transport import (
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    TokenSlot,
    TokenSource,
    Transport,
)

__all__ = ["BellhopClient", "TokenSlot"]

T = TypeVar("T")
ProgressCallback = Callable[[Command], object]
log = logging.getLogger("bellhop_sdk")


@ids_checked
class BellhopClient:
    """The SDK's facade: an async context manager owning both transports and the prober.

    `cloud_url` (the relay's base URL) and/or `lan_target` ("host:port" of the gateway's
    LAN API); `credentials` any `TokenSource` (a cloud login, or a LAN-only token), or
    call `login()`. `lan`/`cloud` take ready transports instead of an address. An event
    stream that lost every path waits `stream_reconnect_s` for one before it raises
    `Unreachable`; `trust_env` lets the cloud's HTTP client take proxies from the
    environment. A LAN event stream silent for `lan_check_s` has the gateway probed (a
    connection that died without a word would otherwise wait forever). Back on the LAN,
    the cloud stream is kept `handover_grace_s` after the gateway's backlog drained, and
    closed with a `Gap` if it did not drain within `handover_max_s`.
    """

    def __init__(
        self,
        *,
        cloud_url: str | None = None,
        lan_target: str | None = None,
        credentials: TokenSource | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        probe_timeout_s: float = 0.3,
        backoff_min_s: float = 0.5,
        backoff_max_s: float = 30.0,
        stream_reconnect_s: float = 60.0,
        lan_check_s: float = 10.0,
        handover_grace_s: float = 1.0,
        handover_max_s: float = 30.0,
        trust_env: bool = True,
        lan: Transport | None = None,
        cloud: Transport | None = None,
    ) -> None:
        self.cloud_url = cloud_url
        self.lan_target = lan_target
        self.timeout_s = timeout_s
        self.stream_reconnect_s = stream_reconnect_s
        self.lan_check_s = lan_check_s
        self.handover_grace_s = handover_grace_s
        self.handover_max_s = handover_max_s
        self.trust_env = trust_env
        self.tokens = TokenSlot(credentials)
        self._lan = lan
        self._cloud = cloud
        if self._lan is None and lan_target is not None:
            from bellhop_sdk.lan import LanTransport

            self._lan = LanTransport(lan_target, self.tokens, timeout_s=timeout_s)
        if self._cloud is None and cloud_url is not None:
            from bellhop_sdk.cloud import CloudTransport

            self._cloud = CloudTransport(
                cloud_url, self.tokens, timeout_s=timeout_s, trust_env=trust_env
            )
        self.selector = PathSelector(
            lan=self._lan is not None,
            cloud=self._cloud is not None,
            probe_timeout_s=probe_timeout_s,
            backoff_min_s=backoff_min_s,
            backoff_max_s=backoff_max_s,
        )
        self.last_path: Path | None = None
        self.lan_hotel_id: str | None = None
        self._login: Any = None  # the CloudLogin made by login(), closed with the client
        self._kick = asyncio.Event()  # the prober looks at the schedule again
        self._waiting_for: float | None = None  # the probe time the prober sleeps until
        self._switched = asyncio.Event()  # replaced at each switch; streams wait on it
        self._prober: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[bool] | None = None
        self._followers: set[Follower] = set()  # open event streams, closed with the client
        self.lan_heard = 0.0  # monotonic time the LAN last answered anything
        self._closed = False

    # -- life cycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Probe the LAN once (so the first call knows) and start the background prober."""
        if self._lan is not None and self._prober is None:
            await self.probe_lan()
            self._prober = asyncio.create_task(self._probe_loop(), name="bellhop-lan-prober")

    async def aclose(self) -> None:
        """Stop the prober, close both transports and a login made here (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for follower in list(self._followers):
            await follower.close()
        for task in (self._prober, self._probe):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, BellhopError):
                    await task
        for transport in (self._lan, self._cloud):
            if transport is not None:
                await transport.aclose()
        if self._login is not None:
            with contextlib.suppress(BellhopError):
                await self._login.aclose()

    async def login(self, email: str, password: str) -> None:
        """Log in to the cloud; the access token then serves both paths (the gateway
        verifies it offline) and is refreshed as it nears expiry."""
        if self.cloud_url is None:
            raise BellhopError("login needs the cloud: pass cloud_url=", code="")
        from bellhop_sdk.auth import CloudLogin

        session = CloudLogin(
            self.cloud_url, email, password, timeout_s=self.timeout_s, trust_env=self.trust_env
        )
        await session.login()
        if self._login is not None:
            await self._login.aclose()
        self._login = session
        self.tokens.source = session

    async def logout(self) -> None:
        """End the cloud session made by `login()`."""
        if self._login is not None:
            session, self._login = self._login, None
            self.tokens.source = None
            try:
                await session.logout()
            finally:
                await session.aclose()

    # -- paths ------------------------------------------------------------------------------

    @property
    def paths(self) -> tuple[Path, ...]:
        """The configured paths, LAN first."""
        return tuple(p for p, t in ((Path.LAN, self._lan), (Path.CLOUD, self._cloud)) if t)

    def transport(self, path: Path) -> Transport:
        found = self._lan if path is Path.LAN else self._cloud
        if found is None:
            raise Unreachable(f"no {path} path is configured", code="no_path", path=path)
        return found

    async def probe_lan(self) -> bool:
        """Probe the gateway now (or join the probe in flight); True when it answered."""
        if self._lan is None:
            return False
        if self._probe is None or self._probe.done():
            if not self.selector.probe_started(time.monotonic()):
                return self.selector.lan_state is LanState.UP
            self._probe = asyncio.create_task(self._run_probe(self._lan), name="bellhop-probe")
        return await asyncio.shield(self._probe)

    async def _run_probe(self, lan: Transport) -> bool:
        ok = False
        before = self.selector.lan_state
        try:
            ok = await lan.probe(self.selector.probe_timeout_s)
            if ok and self.lan_hotel_id is None:
                try:
                    self.lan_hotel_id = (await lan.list_hotels())[0].hotel_id
                except BellhopError:
                    ok = False
        except Exception:  # a transport breaking its promise must not break the client
            log.warning("the LAN probe failed unexpectedly", exc_info=True)
            ok = False
        finally:
            if ok:
                self.lan_heard = time.monotonic()
            self._note(self.selector.probe_finished(ok, time.monotonic()), before)
        return ok

    def _next_probe_at(self) -> float | None:
        """When the prober probes next: the selector's re-probe of a LAN that is down, or
        a check of a LAN that is up but has said nothing for `lan_check_s` while an event
        stream reads from it."""
        due = self.selector.next_probe_at()
        up = self.selector.lan_state is LanState.UP and not self.selector.probing
        if due is None and up and any(f.on_lan for f in self._followers):
            return self.lan_heard + self.lan_check_s
        return due

    async def _probe_loop(self) -> None:
        """Probe the LAN when due; an unexpected error is logged and waits a back-off
        before the next round, so the loop neither dies silently nor spins."""
        while True:
            try:
                due = self._waiting_for = self._next_probe_at()
                self._kick.clear()
                delay = None if due is None else max(0.0, due - time.monotonic())
                if delay is None or delay > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._kick.wait()
                due = self._next_probe_at()
                if due is not None and due <= time.monotonic():
                    await self.probe_lan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("the LAN prober failed; it carries on", exc_info=True)
                await asyncio.sleep(self.selector.backoff_max_s)

    def _note(self, switch: Switch | None, before: LanState | None = None) -> None:
        """Wake the prober when its next probe moved earlier than the one it waits for (a
        later one it finds when it wakes) and, on a switch or when the LAN went up or
        down (`before`: its state before), the streams."""
        due, waiting = self._next_probe_at(), self._waiting_for
        if due is not None and (waiting is None or due < waiting):
            self._kick.set()
        changed = before is not None and before is not self.selector.lan_state
        if switch is not None or changed:
            self._switched.set()
            self._switched = asyncio.Event()

    def switch_signal(self) -> asyncio.Event:
        """An event set at the next path switch (each switch makes a new one)."""
        return self._switched

    def report(self, path: Path, *, reachable: bool) -> None:
        """What a stream learned about a path, fed to the selector like a call's outcome."""
        now = time.monotonic()
        before = self.selector.lan_state
        if reachable:
            if path is Path.LAN:
                self.lan_heard = now
            self._note(self.selector.call_succeeded(path, now), before)
        else:
            self._note(self.selector.call_unreachable(path, now), before)

    async def lan_serves(self, hotel_id: str) -> bool:
        """Whether the LAN may serve `hotel_id` now: the gateway answers and it is its hotel."""
        if self._lan is None:
            return False
        if self.selector.lan_state is not LanState.UP and not await self.probe_lan():
            return False
        return self.lan_hotel_id == hotel_id

    async def call(self, hotel_id: str | None, operation: Callable[[Transport], Awaitable[T]]) -> T:
        """Run `operation` on the chosen path; on `Unreachable` (or `Unsupported`) run it
        again on the other one. The last error is raised when no path is left."""
        tried: set[Path] = set()
        last: BellhopError | None = None
        while (choice := self.selector.choose(frozenset(tried))) is not None:
            path = choice.path
            tried.add(path)
            if path is Path.LAN:
                if choice.probe_first and not await self.probe_lan():
                    last = Unreachable("the gateway does not answer on the LAN", path=path)
                    continue
                elide = self._cloud is not None and hotel_id is not None
                if elide and self.lan_hotel_id != hotel_id:
                    continue  # not the gateway's hotel: the cloud serves it
            try:
                result = await operation(self.transport(path))
            except Unreachable as exc:
                self.report(path, reachable=False)
                last = exc
                continue
            except Unsupported as exc:
                last = exc
                continue
            except MALFORMED as exc:  # the server's answer was not what its API promises
                raise malformed(exc, path) from None
            self.report(path, reachable=True)
            self.last_path = path
            return result
        if last is None:
            last = NotFound(f"no path serves hotel {hotel_id!r}", code="not_found")
        raise last

    # -- reads ------------------------------------------------------------------------------

    async def hotels(self) -> list[Hotel]:
        return await self.call(None, lambda t: t.list_hotels())

    async def hotel(self, hotel_id: str) -> Hotel:
        return await self.call(hotel_id, lambda t: t.get_hotel(hotel_id))

    async def rooms(self, hotel_id: str) -> list[Room]:
        return await self.call(hotel_id, lambda t: t.list_rooms(hotel_id))

    async def devices(self, hotel_id: str, *, room_id: str | None = None) -> list[Device]:
        return await self.call(hotel_id, lambda t: t.list_devices(hotel_id, room_id=room_id))

    async def device(self, hotel_id: str, device_id: str) -> Device:
        return await self.call(hotel_id, lambda t: t.get_device(hotel_id, device_id))

    async def desired(self, hotel_id: str, device_id: str) -> DesiredState:
        return await self.call(hotel_id, lambda t: t.get_desired(hotel_id, device_id))

    async def alerts(
        self,
        hotel_id: str,
        *,
        active_only: bool = False,
        room_id: str | None = None,
        limit: int = 100,
    ) -> list[Alert]:
        return await self.call(
            hotel_id,
            lambda t: t.list_alerts(
                hotel_id, active_only=active_only, room_id=room_id, limit=limit
            ),
        )

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
        return await self.call(
            hotel_id,
            lambda t: t.telemetry(
                hotel_id, device_id, metric, since=since, until=until, limit=limit
            ),
        )

    async def get_command(self, hotel_id: str, command_id: str) -> Command:
        """A command by id (the cloud keeps them; the gateway's LAN API cannot look one up)."""
        return await self.call(hotel_id, lambda t: t.get_command(hotel_id, command_id))

    # -- writes ------------------------------------------------------------------------------

    async def set_desired(
        self,
        hotel_id: str,
        device_id: str,
        values: Mapping[str, Value],
        *,
        expected_version: int | None = None,
    ) -> DesiredState:
        return await self.call(
            hotel_id,
            lambda t: t.set_desired(hotel_id, device_id, values, expected_version=expected_version),
        )

    async def send_command(
        self,
        hotel_id: str,
        device_id: str,
        name: str,
        params: Mapping[str, Value] | None = None,
        *,
        command_id: str | None = None,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        wait: bool = True,
        ttl_s: float | None = None,
    ) -> Command:
        """Send a command and (with `wait`) return its result. Without `command_id` one is
        made; a retry over the other path after `Unreachable` keeps it, so it runs once."""
        cid = command_id or new_command_id()
        return await self.call(
            hotel_id,
            lambda t: t.send_command(
                hotel_id,
                device_id,
                name,
                params,
                command_id=cid,
                timeout_s=timeout_s,
                wait=wait,
                ttl_s=ttl_s,
            ),
        )

    async def fleet_command(
        self,
        hotel_id: str,
        target: FleetTarget,
        name: str,
        params: Mapping[str, Value] | None = None,
        *,
        fleet_id: str | None = None,
        timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        ttl_s: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> FleetCommand:
        """One command to many devices. `progress` is called once per device with its
        command as results come in (from the live events), and for the rest at the end."""
        fid = fleet_id or new_fleet_id()

        async def send(t: Transport) -> FleetCommand:
            return await t.send_fleet_command(
                hotel_id, target, name, params, fleet_id=fid, timeout_s=timeout_s, ttl_s=ttl_s
            )

        if progress is None:
            return await self.call(hotel_id, send)
        return await report_fleet(self, hotel_id, fid, self.call(hotel_id, send), progress)

    async def acknowledge_alert(
        self, hotel_id: str, alert_id: str, *, note: str | None = None
    ) -> AckOutcome:
        return await self.call(
            hotel_id, lambda t: t.acknowledge_alert(hotel_id, alert_id, note=note)
        )

    # -- events ------------------------------------------------------------------------------

    def events(self, hotel_id: str, *, room_id: str | None = None) -> AsyncIterator[Event | Gap]:
        """The hotel's live events, continuing across path switches without repeating an
        event both paths carry, and with a `Gap` where some may have been missed
        (`merge` says how). Iterate until done; close it (or break) to stop."""
        return follow_events(self, hotel_id, room_id=room_id)

    def stream_opened(self, follower: Follower) -> None:
        """An event stream is open (`client_events`): the client closes it on close."""
        if self._closed:
            raise BellhopError("the client is closed", code="closed")
        self._followers.add(follower)
        self._kick.set()  # the prober may now watch the LAN stream

    def stream_closed(self, follower: Follower) -> None:
        self._followers.discard(follower)
