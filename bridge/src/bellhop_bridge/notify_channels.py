"""Channels: which Apprise URLs a policy may hold, how they are shown, how one is sent to.

Shared by the relay's policies and worker and the gateway's `[notify]` section and
local channel. Apprise is a dependency of those two packages (edge, cloud), not of
the bridge protocol: only they import this module.

Apprise's `notify` blocks (HTTP, SMTP) and reports failure as `False` plus log lines
that may name the target: the caller runs `send` in a thread under a timeout, and
what is kept of a failure is a fixed text, never Apprise's message.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlsplit

import apprise

__all__ = [
    "ALLOWED_SCHEMES",
    "KEY_HEADER",
    "LAN",
    "MAX_URL",
    "PUBLIC",
    "WEBHOOK_SCHEMES",
    "Network",
    "Reach",
    "check_url",
    "masked",
    "scheme_of",
    "send",
    "target_host",
    "warm",
    "with_key",
]

# Chat, e-mail, webhooks and SMS gateways. Anything else (a local file, a desktop
# pop-up, a script on the host) has no business in a hotel's policy.
ALLOWED_SCHEMES: Final = frozenset(
    {
        "tgram",
        "slack",
        "mailto",
        "mailtos",
        "json",
        "jsons",
        "form",
        "forms",
        "twilio",
        "vonage",
        "nexmo",
        "sns",
        "msteams",
        "discord",
        "ntfy",
        "ntfys",
    }
)
# Webhooks: the dedupe key goes along as a header (Apprise's `+Name=value` arguments).
WEBHOOK_SCHEMES: Final = frozenset({"json", "jsons", "form", "forms"})
# Schemes whose host part is a host name (shown); in the others it is a token.
_HOST_SHOWN: Final = frozenset({"mailto", "mailtos", "json", "jsons", "form", "forms", "ntfy"})
KEY_HEADER: Final = "X-Bellhop-Notification"
MAX_URL: Final = 2048

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Reach:
    """The addresses a channel may send to. Public (global) addresses always; any other
    (loopback, private, link-local such as a cloud's metadata service, shared,
    reserved, multicast) only inside `private`, or all of them with `lan` (the
    gateway's local channel, which is there to reach the hotel's own network)."""

    private: tuple[Network, ...] = ()
    lan: bool = False

    def allows(self, address: Address) -> bool:
        if self.lan:
            return True
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_global and not address.is_multicast:
            return True
        return any(address in network for network in self.private)


PUBLIC: Final = Reach()  # the relay's default: public addresses only
LAN: Final = Reach(lan=True)
# Control, format (bidirectional overrides, zero-width), unassigned, surrogate, private.
_HIDDEN: Final = frozenset({"Cc", "Cf", "Cn", "Cs", "Co"})
_REFUSED: Final = "a private, loopback or link-local target, which this service does not send to"


@functools.cache
def warm() -> None:
    """Load Apprise's plugins once (about a second). Some import modules that warn of
    their own deprecation (`imghdr`): silenced here, once, rather than at every use
    from threads, where changing the warning filters is not safe."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        apprise.Apprise.instantiate("json://localhost", suppress_exceptions=True)


def scheme_of(url: str) -> str:
    return url.partition("://")[0].lower()


def target_host(plugin: Any, scheme: str) -> str | None:
    """The host a channel connects to when that is the URL's to say (a webhook, an SMTP
    server, a self-hosted ntfy), or None for a service at a fixed address (the host
    part of a `tgram://` or `slack://` URL is a token)."""
    if scheme in ("mailto", "mailtos"):
        host = getattr(plugin, "smtp_host", None) or getattr(plugin, "host", None)
    elif scheme in ("ntfy", "ntfys"):
        host = getattr(plugin, "host", None) if getattr(plugin, "mode", None) == "private" else None
    elif scheme in WEBHOOK_SCHEMES:
        host = getattr(plugin, "host", None)
    else:
        return None
    return str(host).strip("[]").lower() if host else None


def _literal(host: str) -> Address | None:
    """The address a host name is by itself: an IP in any notation the resolver takes
    (`127.1`, `2130706433`, `0x7f.0.0.1`), or a name the resolver keeps local."""
    if host == "localhost" or host.endswith(".localhost"):
        return ipaddress.IPv4Address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_url(url: str, reach: Reach = PUBLIC) -> str | None:
    """Why `url` may not be a channel, or None if it may. A target given as an address
    outside `reach` is refused here; one given by name is checked when it is sent to
    (its address may change), see `send`."""
    if len(url) > MAX_URL:
        return f"at most {MAX_URL} characters"
    if any(ch.isspace() or unicodedata.category(ch) in _HIDDEN for ch in url):
        return "no white space, control or invisible characters"
    scheme = scheme_of(url)
    if "://" not in url or scheme not in ALLOWED_SCHEMES:
        return "the scheme must be one of " + ", ".join(sorted(ALLOWED_SCHEMES))
    warm()
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return f"not a {scheme}:// URL Apprise accepts"
    host = target_host(plugin, scheme)
    if host is not None and (address := _literal(host)) is not None and not reach.allows(address):
        return _REFUSED
    return None


def _resolves_outside(host: str, reach: Reach) -> str | None:
    """Why a send to `host` may not go ahead: it does not resolve, or an address it
    resolves to is outside `reach`. (The connection resolves the name again: a name
    that changes its answer in between is the limit of this check, see
    docs/notifications.md.)"""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return "the target's name does not resolve"
    for info in infos:
        try:
            address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
        except ValueError:
            return _REFUSED
        if not reach.allows(address):
            return _REFUSED
    return None


def masked(url: str) -> str:
    """The URL as the API shows it: scheme, and host name where that is no secret;
    credentials, tokens, paths and arguments replaced by `***`."""
    scheme = scheme_of(url)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{scheme}://***"
    if scheme not in _HOST_SHOWN or not host:
        return f"{scheme}://***"
    if scheme == "ntfy" and not parts.path.strip("/"):
        return f"{scheme}://***"  # ntfy://topic: the host part is the topic, a secret
    if ":" in host:
        host = f"[{host}]"
    user = "***@" if "@" in parts.netloc else ""
    rest = "/***" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{scheme}://{user}{host}{port}{rest}"


def with_key(url: str, key: str) -> str:
    """A webhook URL that also sends the dedupe key as a header."""
    if scheme_of(url) not in WEBHOOK_SCHEMES:
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}+{KEY_HEADER}={quote(key, safe='')}"


def send(url: str, title: str, body: str, key: str, reach: Reach = PUBLIC) -> str | None:
    """Send one notification (blocking); None if the channel accepted it, else why not.
    Outside the LAN, the target must resolve to addresses in `reach` only, and HTTP
    redirects are not followed (one could lead anywhere)."""
    warm()
    plugin = apprise.Apprise.instantiate(with_key(url, key), suppress_exceptions=True)
    if plugin is None:
        return "the URL is not one Apprise accepts"
    if not reach.lan:
        host = target_host(plugin, scheme_of(url))
        if host is not None and (why := _resolves_outside(host, reach)) is not None:
            return why
        plugin.redirects = False
    sender = apprise.Apprise()
    if not sender.add(plugin):
        return "the URL is not one Apprise accepts"
    try:
        accepted = sender.notify(body=body, title=title)
    except Exception as exc:  # a plugin's own bug must not end the worker
        log.warning("a %s:// channel raised %s", scheme_of(url), type(exc).__name__)
        return "the channel failed"
    return None if accepted else "the channel did not accept it"
