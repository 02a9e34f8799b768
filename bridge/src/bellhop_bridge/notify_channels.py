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
import logging
import warnings
from typing import Final
from urllib.parse import quote, urlsplit

import apprise

__all__ = [
    "ALLOWED_SCHEMES",
    "KEY_HEADER",
    "MAX_URL",
    "WEBHOOK_SCHEMES",
    "check_url",
    "masked",
    "scheme_of",
    "send",
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


def check_url(url: str) -> str | None:
    """Why `url` may not be a channel, or None if it may."""
    if len(url) > MAX_URL:
        return f"at most {MAX_URL} characters"
    scheme = scheme_of(url)
    if "://" not in url or scheme not in ALLOWED_SCHEMES:
        return "the scheme must be one of " + ", ".join(sorted(ALLOWED_SCHEMES))
    warm()
    if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
        return f"not a {scheme}:// URL Apprise accepts"
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
    user = "***@" if "@" in parts.netloc else ""
    rest = "/***" if parts.path.strip("/") or parts.query else ""
    return f"{scheme}://{user}{host}{port}{rest}"


def with_key(url: str, key: str) -> str:
    """A webhook URL that also sends the dedupe key as a header."""
    if scheme_of(url) not in WEBHOOK_SCHEMES:
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}+{KEY_HEADER}={quote(key, safe='')}"


def send(url: str, title: str, body: str, key: str) -> str | None:
    """Send one notification (blocking); None if the channel accepted it, else why not."""
    warm()
    sender = apprise.Apprise()
    if not sender.add(with_key(url, key)):
        return "the URL is not one Apprise accepts"
    try:
        accepted = sender.notify(body=body, title=title)
    except Exception as exc:  # a plugin's own bug must not end the worker
        log.warning("a %s:// channel raised %s", scheme_of(url), type(exc).__name__)
        return "the channel failed"
    return None if accepted else "the channel did not accept it"
