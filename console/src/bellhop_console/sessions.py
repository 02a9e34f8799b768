"""Server-side sessions: the browser holds a random id, the console holds the SDK client.

The cookie carries only a random session id (HttpOnly, SameSite=Strict, Secure
when served over TLS, `__Host-` prefixed then). The SDK's tokens (a cloud
session's access and refresh tokens, or a LAN-only staff token) stay in this
process: never in a page, a URL or a cookie. The password is used to log in
and then forgotten, so when the relay refuses the refresh token (the session
was ended elsewhere, or expired) the console session ends too, rather than
quietly logging in again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx
from bellhop_sdk import (
    BellhopClient,
    BellhopError,
    Forbidden,
    Hotel,
    NotFound,
    StaticToken,
    Unauthenticated,
    Unreachable,
)
from bellhop_sdk import Path as ServedPath
from bellhop_sdk.cloud import problem_error

from bellhop_console import csrf
from bellhop_console.config import ConsoleConfig

__all__ = ["ConsoleSession", "RelayLogin", "SessionStore", "cookie_name"]

log = logging.getLogger("bellhop_console")

REFRESH_MARGIN_S: Final = 30.0
SWEEP_S: Final = 30.0
# Roles that may send commands and acknowledge alerts (the servers' own rule).
COMMANDING: Final = frozenset({"staff", "manager", "admin", "owner"})
RANK: Final = {"viewer": 1, "staff": 2, "manager": 3, "admin": 4, "owner": 5}
# An alert id that cannot exist: acknowledging it says whether a LAN token may act.
PROBE_ALERT: Final = "console-role-probe"


def cookie_name(config: ConsoleConfig) -> str:
    # `__Host-` binds the cookie to this origin, path / and Secure (the browser enforces it).
    return "__Host-bellhop_session" if config.secure_cookies else "bellhop_session"


class RelayLogin:
    """A cloud session as the SDK's `TokenSource`, holding tokens but never the password."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0
        self.ended = False

    async def login(self, email: str, password: str) -> None:
        async with self._lock:
            self._keep(await self._post("/v1/auth/login", {"email": email, "password": password}))

    async def token(self) -> str:
        if self._access is not None and time.monotonic() < self._expires_at - REFRESH_MARGIN_S:
            return self._access
        return await self.refresh(stale=self._access)

    async def refresh(self, stale: str | None = None) -> str:
        async with self._lock:
            if self._access is not None and self._access != stale and stale is not None:
                return self._access  # another call refreshed while this one waited
            if self.ended or self._refresh_token is None:
                raise Unauthenticated("the session ended: log in again", code="session_ended")
            try:
                body = await self._post("/v1/auth/refresh", {"refresh_token": self._refresh_token})
            except Unreachable:
                # The gateway verifies tokens offline: one not yet expired still serves the LAN.
                if self._access is not None and time.monotonic() < self._expires_at:
                    return self._access
                raise
            except Unauthenticated:
                self.ended = True
                raise
            self._keep(body)
            assert self._access is not None
            return self._access

    def claims(self) -> dict[str, Any]:
        """The access token's claims, as the relay issued them to this process.

        Read without checking the signature: they come straight from the relay over
        this process's own connection, and only decide which controls to show; the
        servers check every call themselves.
        """
        if self._access is None:
            return {}
        try:
            payload = self._access.split(".")[1]
            decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            return {}
        return decoded if isinstance(decoded, dict) else {}

    async def logout(self) -> None:
        async with self._lock:
            refresh_token, self._refresh_token, self._access = self._refresh_token, None, None
            self.ended = True
            if refresh_token is not None:
                with contextlib.suppress(BellhopError):
                    await self._post("/v1/auth/logout", {"refresh_token": refresh_token})

    async def aclose(self) -> None:
        await self._http.aclose()

    def _keep(self, body: Any) -> None:
        self._access = str(body["access_token"])
        self._refresh_token = str(body["refresh_token"])
        self._expires_at = time.monotonic() + float(body["expires_in"])

    async def _post(self, url: str, body: dict[str, str]) -> Any:
        try:
            response = await self._http.post(url, json=body)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"the cloud could not be reached ({type(exc).__name__})",
                code="unreachable",
                path=ServedPath.CLOUD,
            ) from None
        if response.status_code >= 400:
            raise problem_error(response)
        return response.json() if response.content else None


@dataclass(eq=False)
class ConsoleSession:
    """One signed-in browser: its SDK client and what the page needs to know about it."""

    sid: str
    who: str
    kind: Literal["cloud", "lan"]
    client: BellhopClient
    expires_at: float  # monotonic
    csrf: str = field(default_factory=csrf.new_token)
    login: RelayLogin | None = None
    flash: str | None = None
    ended: bool = False
    _lan_role: str | None = None

    @property
    def expired(self) -> bool:
        return (
            self.ended
            or time.monotonic() >= self.expires_at
            or (self.login is not None and self.login.ended)
        )

    async def role(self, hotel: Hotel) -> str:
        """The role to show controls for on `hotel` ("viewer" when unsure)."""
        if self.login is not None:
            claims = self.login.claims()
            found = [
                str(roles.get(key))
                for roles, key in (
                    (claims.get("hotel_roles"), hotel.hotel_id),
                    (claims.get("org_roles"), hotel.org_id),
                )
                if isinstance(roles, dict) and key is not None and roles.get(key) is not None
            ]
            # A room-limited grant is not in the token: no controls, the relay decides.
            return max(found, key=lambda r: RANK.get(r, 0), default="viewer")
        if self._lan_role is None:
            self._lan_role = await self._probe_lan_role(hotel.hotel_id)
        return self._lan_role

    def whole_hotel(self, hotel: Hotel) -> bool:
        """Whether this sign-in sees every room of `hotel`: a LAN token does (the gateway
        has no room-limited grants); a cloud sign-in when its token grants the hotel or
        its organisation (a room-limited grant is not in the token)."""
        if self.login is None:
            return True
        claims = self.login.claims()
        return any(
            isinstance(roles, dict) and key is not None and roles.get(key) is not None
            for roles, key in (
                (claims.get("hotel_roles"), hotel.hotel_id),
                (claims.get("org_roles"), hotel.org_id),
            )
        )

    async def may_command(self, hotel: Hotel) -> bool:
        return await self.role(hotel) in COMMANDING

    async def _probe_lan_role(self, hotel_id: str) -> str:
        # The gateway checks the role before it looks the alert up: refused means viewer.
        try:
            await self.client.acknowledge_alert(hotel_id, PROBE_ALERT)
        except Forbidden:
            return "viewer"
        except NotFound:
            return "staff"
        except BellhopError:
            return "viewer"
        return "staff"

    async def close(self) -> None:
        """End it here and, for a cloud login, on the relay too."""
        self.ended = True
        if self.login is not None:
            with contextlib.suppress(BellhopError):
                await self.login.logout()
        await self.client.aclose()
        if self.login is not None:
            await self.login.aclose()


class SessionStore:
    """Every live session by id; expired ones are closed by a sweeper task it owns."""

    def __init__(self, config: ConsoleConfig, *, sweep_s: float = SWEEP_S) -> None:
        self.config = config
        self.sweep_s = sweep_s
        self._sessions: dict[str, ConsoleSession] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.on_end: list[Any] = []  # callbacks(session) run when a session ends

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="console-session-sweeper")

    def __len__(self) -> int:
        return len(self._sessions)

    def _client(self, credentials: Any) -> BellhopClient:
        return BellhopClient(
            cloud_url=self.config.cloud_url,
            lan_target=self.config.lan_target,
            credentials=credentials,
            timeout_s=self.config.call_timeout_s,
            probe_timeout_s=self.config.probe_timeout_s,
        )

    async def log_in_cloud(self, email: str, password: str) -> ConsoleSession:
        if self.config.cloud_url is None:
            raise BellhopError("this console has no cloud: sign in with a LAN token", code="")
        login = RelayLogin(self.config.cloud_url, timeout_s=self.config.call_timeout_s)
        try:
            await login.login(email, password)
        except BaseException:
            await login.aclose()
            raise
        return await self._open(email, "cloud", self._client(login), login)

    async def log_in_lan(self, token: str) -> ConsoleSession:
        if self.config.lan_target is None:
            raise BellhopError("this console has no gateway: sign in with an account", code="")
        client = self._client(StaticToken(token))
        try:
            await client.open()
            await client.hotels()  # the gateway says whether the token is good
        except BaseException:
            await client.aclose()
            raise
        return await self._open("staff on site (LAN token)", "lan", client, None)

    async def _open(
        self,
        who: str,
        kind: Literal["cloud", "lan"],
        client: BellhopClient,
        login: RelayLogin | None,
    ) -> ConsoleSession:
        if kind == "cloud":
            await client.open()
        session = ConsoleSession(
            sid=secrets.token_urlsafe(32),
            who=who,
            kind=kind,
            client=client,
            expires_at=time.monotonic() + self.config.session_ttl_s,
            login=login,
        )
        self._sessions[session.sid] = session
        log.info("session opened (%s)", kind)
        return session

    async def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session with this id; an expired one is ended on the way."""
        session = self._sessions.get(sid) if sid else None
        if session is not None and session.expired:
            await self.end(session)
            return None
        return session

    async def end(self, session: ConsoleSession) -> None:
        if self._sessions.pop(session.sid, None) is None:
            return
        for callback in self.on_end:
            callback(session)
        await session.close()
        log.info("session ended (%s)", session.kind)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_s)
            for session in [s for s in self._sessions.values() if s.expired]:
                try:
                    await self.end(session)
                except Exception:
                    log.warning("ending an expired session failed", exc_info=True)

    async def aclose(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for session in list(self._sessions.values()):
            with contextlib.suppress(Exception):
                await self.end(session)
