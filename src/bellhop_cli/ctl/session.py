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
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Final

from bellhop_sdk import CloudLogin, SessionTokens, Unauthenticated, Unreachable

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
        kept = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
        # A file edited by hand or cut short: a field of another type is no session (the
        # caller says "not logged in"), never a traceback further on.
        for name, value in kept.items():
            if name == "access_expires_at":
                number = isinstance(value, int | float) and not isinstance(value, bool)
                if not number or not math.isfinite(value):
                    return None
            elif value is not None and not isinstance(value, str):
                return None
        return cls(**kept)

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


def _login_of(
    session: Session,
    timeout_s: float,
    on_rotate: Callable[[SessionTokens], object] | None = None,
) -> CloudLogin:
    """The SDK's token source for the saved cloud session."""
    assert session.cloud_url is not None
    assert session.refresh_token is not None
    return CloudLogin.from_session(
        session.cloud_url,
        refresh_token=session.refresh_token,
        access_token=session.access_token,
        access_expires_at=session.access_expires_at,
        email=session.email,
        on_rotate=on_rotate,
        refresh_margin_s=REFRESH_MARGIN_S,
        timeout_s=timeout_s,
    )


def _keep(session: Session, tokens: SessionTokens) -> None:
    session.access_token = tokens.access_token
    session.refresh_token = tokens.refresh_token
    session.access_expires_at = tokens.access_expires_at


async def login(cloud_url: str, email: str, password: str, *, timeout_s: float = 10.0) -> Session:
    """Log in to the relay; the session to save (without the password)."""
    session = Session(cloud_url=cloud_url.rstrip("/"), email=email)
    async with CloudLogin(
        cloud_url, email, password, timeout_s=timeout_s, on_rotate=lambda t: _keep(session, t)
    ) as cloud:
        await cloud.login()
    return session


async def logout(session: Session, *, timeout_s: float = 10.0) -> None:
    """End the session on the relay (a LAN token has nothing to end there)."""
    if session.cloud_url and session.refresh_token:
        async with _login_of(session, timeout_s) as cloud:
            await cloud.logout()


class SessionLogin:
    """The saved cloud session as the SDK's `TokenSource`. A refresh resumes it as a
    `CloudLogin` from the file, read again under the file lock (module doc), and the
    rotated tokens are saved by its `on_rotate` before the lock is let go."""

    def __init__(self, path: Path, session: Session, *, timeout_s: float = 10.0) -> None:
        if not session.cloud_url or not session.refresh_token:
            raise Unauthenticated("not logged in: run `bellhop ctl login`", code="not_logged_in")
        self._path = path
        self._session = session
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()

    def _rotated(self, tokens: SessionTokens) -> None:
        _keep(self._session, tokens)
        self._session.save(self._path)

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
        try:
            async with _login_of(self._session, self._timeout_s, self._rotated) as cloud:
                return await (cloud.refresh() if force else cloud.token())
        except Unreachable:
            # The gateway verifies tokens offline: one not yet expired still serves the LAN.
            if self._session.access_token and time.time() < self._session.access_expires_at:
                return self._session.access_token
            raise
        except Unauthenticated as exc:
            raise Unauthenticated(
                f"the saved session ended ({exc.message}): run `bellhop ctl login`",
                code=exc.code,
                path=exc.path,
            ) from None
