"""The console's configuration: where it listens, which paths it reaches, its cookies.

Built from `bellhop console` options (`cli.py`) or directly in code; `validate()`
refuses what would be unsafe or cannot work (no path at all, a Secure cookie over
plain HTTP, a certificate without its key) with one message per problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

__all__ = ["ConfigError", "ConsoleConfig", "parse_listen"]

DEFAULT_LISTEN: Final = "127.0.0.1:8480"
DEFAULT_SESSION_TTL_S: Final = 8 * 3600.0  # a working shift
MIN_SESSION_TTL_S: Final = 60.0


class ConfigError(ValueError):
    """The configuration cannot be used; the message lists every problem."""


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:8480`) as (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"listen: {value!r} is not host:port")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """Everything the console needs; every field has a safe default but the paths.

    `cookie_secure`: None means "Secure exactly when served over TLS" (the cookie
    must not be Secure over plain HTTP, or the browser would never send it back);
    True without TLS here is for a console behind a proxy that terminates TLS.
    `session_ttl_s` bounds a console session however active it is; the cloud
    session below it may end sooner (its refresh refused), and the console's with it.
    """

    listen: str = DEFAULT_LISTEN
    cloud_url: str | None = None
    lan_target: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    cookie_secure: bool | None = None
    session_ttl_s: float = DEFAULT_SESSION_TTL_S
    call_timeout_s: float = 10.0
    probe_timeout_s: float = 0.3
    # Bounded per-page queues of live events: a page that cannot keep up is told to re-read.
    client_queue: int = 256

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def secure_cookies(self) -> bool:
        return self.tls if self.cookie_secure is None else self.cookie_secure

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    def validate(self) -> ConsoleConfig:
        """This configuration, or `ConfigError` naming every problem."""
        problems = [*self._address_problems(), *self._limit_problems()]
        if problems:
            raise ConfigError("; ".join(problems))
        return self

    def _address_problems(self) -> list[str]:
        problems: list[str] = []
        try:
            self.host_port  # noqa: B018 - parsed for its error
        except ConfigError as exc:
            problems.append(str(exc))
        if self.cloud_url is None and self.lan_target is None:
            problems.append("give the cloud URL (--cloud), the gateway (--lan), or both")
        if self.cloud_url is not None:
            parts = urlsplit(self.cloud_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                problems.append(f"cloud: {self.cloud_url!r} is not an http(s) URL")
        if self.lan_target is not None:
            try:
                parse_listen(self.lan_target)
            except ConfigError:
                problems.append(f"lan: {self.lan_target!r} is not host:port")
        if (self.tls_cert is None) != (self.tls_key is None):
            problems.append("TLS needs both the certificate and its key")
        for name, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path is not None and not path.is_file():
                problems.append(f"{name}: {path} is not a file")
        return problems

    def _limit_problems(self) -> list[str]:
        problems: list[str] = []
        if not MIN_SESSION_TTL_S <= self.session_ttl_s <= 7 * 86400:
            problems.append("session lifetime: between 60 s and 7 days")
        if not 0 < self.call_timeout_s <= 120:
            problems.append("call timeout: more than 0 and at most 120 s")
        if not 0 < self.probe_timeout_s <= 10:
            problems.append("probe timeout: more than 0 and at most 10 s")
        if not 8 <= self.client_queue <= 100_000:
            problems.append("client queue: between 8 and 100000 events")
        return problems
