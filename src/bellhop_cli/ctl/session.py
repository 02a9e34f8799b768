"""Where `bellhop ctl` keeps its login between invocations.

One JSON file, `$XDG_CONFIG_HOME/bellhop/ctl-session.json` (`~/.config/bellhop/` when
XDG_CONFIG_HOME is unset), created 0600 in a 0700 directory. It holds the cloud URL,
the LAN target, the e-mail, the session's refresh token and its current access token
with its expiry, or, for LAN-only staff, their LAN token. Never the password.

The relay's refresh tokens are one-time: using one twice ends the session. Two
`bellhop ctl` processes may run at once (a `follow` next to a `command`), so a refresh
takes an exclusive lock on `ctl-session.lock`, reads the file again (another process
may have refreshed already: its access token is used), and only then spends the
refresh token and writes the new pair.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

import httpx
from bellhop_sdk import BellhopError, Unauthenticated, Unreachable
from bellhop_sdk import Path as ServedPath
from bellhop_sdk.cloud import problem_error

__all__ = ["Session", "SessionLogin", "config_dir", "login", "logout", "session_file"]

FILE_NAME: Final = "ctl-session.json"
LOCK_NAME: Final = "ctl-session.lock"
# Refresh an access token that expires within this long.
REFRESH_MARGIN_S: Final = 30.0


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "bellhop"


def session_file() -> Path:
    return config_dir() / FILE_NAME


@dataclass
class Session:
    """What the file holds; every field optional."""

    cloud_url: str | None = None
    lan_target: str | None = None
    email: str | None = None
    refresh_token: str | None = None
    access_token: str | None = None
    access_expires_at: float = 0.0  # seconds since the epoch
    lan_token: str | None = None

    @classmethod
    def load(cls, path: Path) -> Session | None:
        """The saved session, or None when there is none (or it is unreadable)."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename), 0600 from the start."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(asdict(self), indent=2).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.parent / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


async def _post(http: httpx.AsyncClient, url: str, body: dict[str, str]) -> Any:
    try:
        response = await http.post(url, json=body)
    except httpx.TransportError as exc:
        raise Unreachable(
            f"{type(exc).__name__}: {exc}", code="unreachable", path=ServedPath.CLOUD
        ) from None
    if response.status_code >= 400:
        raise problem_error(response)
    return response.json() if response.content else None


def _http(base_url: str, timeout_s: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s)


def _keep(session: Session, body: Any) -> None:
    session.access_token = str(body["access_token"])
    session.refresh_token = str(body["refresh_token"])
    session.access_expires_at = time.time() + float(body["expires_in"])


async def login(cloud_url: str, email: str, password: str, *, timeout_s: float = 10.0) -> Session:
    """Log in to the relay; the session to save (without the password)."""
    async with _http(cloud_url, timeout_s) as http:
        body = await _post(http, "/v1/auth/login", {"email": email, "password": password})
    session = Session(cloud_url=cloud_url.rstrip("/"), email=email)
    _keep(session, body)
    return session


async def logout(session: Session, *, timeout_s: float = 10.0) -> None:
    """End the session on the relay (a LAN token has nothing to end there)."""
    if session.cloud_url and session.refresh_token:
        async with _http(session.cloud_url, timeout_s) as http:
            await _post(http, "/v1/auth/logout", {"refresh_token": session.refresh_token})


class SessionLogin:
    """The saved cloud session as the SDK's `TokenSource`, refreshed and saved as it goes."""

    def __init__(self, path: Path, session: Session, *, timeout_s: float = 10.0) -> None:
        if not session.cloud_url or not session.refresh_token:
            raise Unauthenticated("not logged in: run `bellhop ctl login`", code="not_logged_in")
        self._path = path
        self._session = session
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()

    def _fresh(self, session: Session) -> bool:
        return bool(session.access_token) and (
            time.time() < session.access_expires_at - REFRESH_MARGIN_S
        )

    async def token(self) -> str:
        if self._fresh(self._session):
            assert self._session.access_token is not None
            return self._session.access_token
        return await self._refresh(force=False)

    async def refresh(self) -> str:
        return await self._refresh(force=True)

    async def _refresh(self, *, force: bool) -> str:
        stale = self._session.access_token
        async with self._lock:
            if self._session.access_token != stale and self._fresh(self._session):
                assert self._session.access_token is not None
                return self._session.access_token  # refreshed while we waited
            lock = _locked(self._path)
            await asyncio.to_thread(lock.__enter__)
            try:
                return await self._refresh_locked(stale, force=force)
            finally:
                lock.__exit__(None, None, None)

    async def _refresh_locked(self, stale: str | None, *, force: bool) -> str:
        saved = Session.load(self._path)
        if saved is not None and saved.refresh_token and saved.cloud_url:
            self._session = saved  # another process may have refreshed
            token = saved.access_token
            if token and self._fresh(saved) and (not force or token != stale):
                return token
        assert self._session.cloud_url is not None
        assert self._session.refresh_token is not None
        try:
            async with _http(self._session.cloud_url, self._timeout_s) as http:
                body = await _post(
                    http, "/v1/auth/refresh", {"refresh_token": self._session.refresh_token}
                )
        except Unreachable:
            # The gateway verifies tokens offline: one not yet expired still serves the LAN.
            if self._session.access_token and time.time() < self._session.access_expires_at:
                return self._session.access_token
            raise
        except BellhopError as exc:
            if isinstance(exc, Unauthenticated):
                raise Unauthenticated(
                    f"the saved session ended ({exc.message}): run `bellhop ctl login`",
                    code=exc.code,
                    path=exc.path,
                ) from None
            raise
        _keep(self._session, body)
        self._session.save(self._path)
        assert self._session.access_token is not None
        return self._session.access_token
