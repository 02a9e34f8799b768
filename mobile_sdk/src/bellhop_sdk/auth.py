"""Where tokens come from: a cloud login (one token for both paths) or a LAN-only token.

`CloudLogin` logs in to the relay (POST /v1/auth/login) and keeps the access
token fresh: `token()` refreshes it (POST /v1/auth/refresh) when it expires
within `refresh_margin_s`, and `refresh()` does so on demand, after a server
said the token is no longer good. The gateway accepts the same access token
on the LAN, verified offline against the relay's keys it cached.

Refresh tokens are one-time: using one twice ends the whole session. Refreshes
are therefore serialised, and a refresh asked for right after another one
(by concurrent calls that failed with the same old token) returns the new
token instead of spending the refresh token again. When the refresh token is
no longer accepted, `CloudLogin` logs in again with the password it holds (a
session resumed with `from_session` holds none: it raises `Unauthenticated`).
`on_rotate` is called with the new tokens each time they change, so a caller
that keeps the session (a CLI between runs) saves the pair it must use next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from bellhop_sdk.cloud import problem_error
from bellhop_sdk.cloud_read import MAX_ANSWER_BYTES, read_bounded
from bellhop_sdk.errors import BellhopError, Unauthenticated, Unreachable
from bellhop_sdk.models import Path
from bellhop_sdk.transport import DEFAULT_TIMEOUT_S

__all__ = ["CloudLogin", "SessionTokens", "StaticToken"]

# A refresh within this long of the previous one is taken as the same refresh.
REFRESH_COALESCE_S: Final = 1.0
# Refresh tokens the relay no longer takes: log in again rather than fail.
_LOGIN_AGAIN: Final = frozenset({"refresh_token_invalid", "refresh_token_reused", "invalid_token"})


@dataclass(frozen=True, slots=True)
class SessionTokens:
    """A session's current tokens, as `CloudLogin`'s `on_rotate` receives them.

    `access_expires_at`: seconds since the epoch (wall clock). The refresh token is
    one-time: the one given here is the only one the relay still takes.
    """

    access_token: str
    refresh_token: str
    access_expires_at: float


class StaticToken:
    """A fixed token: a LAN-only `bht_…` token for staff on site, or any bearer token.

    It cannot be refreshed: `refresh()` returns it unchanged, so a call that
    was refused is tried once more and then fails with the server's own error.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token

    async def refresh(self) -> str:
        return self._token


class CloudLogin:
    """An account's session on the relay at `base_url`, as a `TokenSource`."""

    def __init__(
        self,
        base_url: str,
        email: str | None,
        password: str | None,
        *,
        refresh_margin_s: float = 30.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trust_env: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_rotate: Callable[[SessionTokens], object] | None = None,
    ) -> None:
        self._email, self._password = email, password
        self._on_rotate = on_rotate
        self._margin_s = refresh_margin_s
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, trust_env=trust_env
        )
        self._lock = asyncio.Lock()
        self._access: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0  # on `clock`
        self._refreshed_at = -1e18

    @classmethod
    def from_session(
        cls,
        base_url: str,
        *,
        refresh_token: str,
        access_token: str | None = None,
        access_expires_at: float | None = None,
        email: str | None = None,
        on_rotate: Callable[[SessionTokens], object] | None = None,
        refresh_margin_s: float = 30.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trust_env: bool = True,
    ) -> CloudLogin:
        """A session logged in earlier (its tokens kept by the caller), without the
        password: the access token is used while it is good (`access_expires_at`:
        seconds since the epoch), then the refresh token. When the relay no longer
        takes the refresh token, calls raise `Unauthenticated`: log in again."""
        login = cls(
            base_url,
            email,
            None,
            refresh_margin_s=refresh_margin_s,
            timeout_s=timeout_s,
            trust_env=trust_env,
            on_rotate=on_rotate,
        )
        login._refresh_token = refresh_token
        if access_token is not None and access_expires_at is not None:
            login._access = access_token
            login._expires_at = login._clock() + (access_expires_at - time.time())
        return login

    @property
    def email(self) -> str | None:
        return self._email

    @property
    def logged_in(self) -> bool:
        return self._access is not None

    @property
    def expires_in_s(self) -> float:
        """Seconds until the access token expires (0 when there is none)."""
        return max(0.0, self._expires_at - self._clock()) if self._access else 0.0

    async def login(self) -> str:
        """Log in with the email and password; returns the access token."""
        async with self._lock:
            return await self._login()

    async def token(self) -> str:
        """The access token, refreshed first when it expires within the margin.

        When that refresh cannot reach the relay, a token that has not expired yet
        is still returned (the gateway verifies it offline).
        """
        if self._access is not None and self._clock() < self._expires_at - self._margin_s:
            return self._access
        async with self._lock:
            if self._access is None:
                return await self._refresh()  # a log-in when there is no refresh token
            if self._clock() < self._expires_at - self._margin_s:
                return self._access
            try:
                return await self._refresh()
            except Unreachable:
                if self._clock() < self._expires_at:
                    return self._access
                raise

    async def refresh(self) -> str:
        """A new access token now (after a server refused the current one)."""
        async with self._lock:
            if self._access is not None and (
                self._clock() - self._refreshed_at < REFRESH_COALESCE_S
            ):
                return self._access
            return await self._refresh()

    async def logout(self) -> None:
        """End the session on the relay (idempotent there) and forget the tokens."""
        async with self._lock:
            refresh_token, self._access, self._refresh_token = self._refresh_token, None, None
            if refresh_token is not None:
                await self._post("/v1/auth/logout", {"refresh_token": refresh_token}, 204)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> CloudLogin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- under the lock --------------------------------------------------------------------
    async def _login(self) -> str:
        if self._password is None or self._email is None:
            raise Unauthenticated(
                "the session ended and no password is held: log in again",
                code="session_ended",
                path=Path.CLOUD,
            )
        body = await self._post(
            "/v1/auth/login", {"email": self._email, "password": self._password}, 200
        )
        return self._keep(body)

    async def _refresh(self) -> str:
        if self._refresh_token is None:
            return await self._login()
        try:
            body = await self._post("/v1/auth/refresh", {"refresh_token": self._refresh_token}, 200)
        except Unauthenticated as exc:
            if exc.code not in _LOGIN_AGAIN or self._password is None:
                raise
            return await self._login()
        return self._keep(body)

    def _keep(self, body: Any) -> str:
        self._access = str(body["access_token"])
        self._refresh_token = str(body["refresh_token"])
        now = self._clock()
        self._expires_at = now + float(body["expires_in"])
        self._refreshed_at = now
        if self._on_rotate is not None:
            expires = time.time() + float(body["expires_in"])
            self._on_rotate(SessionTokens(self._access, self._refresh_token, expires))
        return self._access

    async def _post(self, url: str, body: dict[str, str], status: int) -> Any:
        try:
            sent = await self._http.send(
                self._http.build_request("POST", url, json=body), stream=True
            )
            response = await read_bounded(sent, MAX_ANSWER_BYTES)
        except httpx.TransportError as exc:
            code = "timeout" if isinstance(exc, httpx.TimeoutException) else "unreachable"
            raise Unreachable(f"{type(exc).__name__}: {exc}", code=code, path=Path.CLOUD) from None
        if response.status_code >= 400:
            raise problem_error(response)
        if response.status_code != status:
            raise BellhopError(
                f"unexpected answer {response.status_code} to {url}",
                code=f"http_{response.status_code}",
                path=Path.CLOUD,
                status=response.status_code,
            )
        return response.json() if response.content else None
