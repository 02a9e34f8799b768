"""The client's address: the TCP peer, or what a trusted proxy says it is.

Throttling and the audit log key on the client's address. By default it is
the TCP peer and `X-Forwarded-*` headers are ignored, whoever sends them
(uvicorn's own handling, which believes loopback peers, is turned off in
`server.py`). With `trusted_proxies` set, and only for requests whose peer
is one of them, `X-Forwarded-For` names the client: read right to left, the
first address that is not a trusted proxy, since everything left of it was
written by the client itself. `X-Forwarded-Proto` (its last value) gives the
scheme. A header that does not parse leaves the peer as the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from bellhop_cloud.config import parse_networks

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_SCHEMES = {"http": {"http": "http", "https": "https"}, "websocket": {"http": "ws", "https": "wss"}}


class ForwardedHeaders:
    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self._trusted = parse_networks(trusted)

    def _is_trusted(self, address: Address) -> bool:
        return any(address in network for network in self._trusted)

    def _parse(self, text: str) -> Address | None:
        try:
            return ipaddress.ip_address(text.strip())
        except ValueError:
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        peer = self._parse(client[0]) if client else None
        if scope["type"] in _SCHEMES and peer is not None and self._is_trusted(peer):
            hops: list[str] = []
            proto: str | None = None
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    hops += value.decode("latin-1").split(",")
                elif name == b"x-forwarded-proto":
                    proto = value.decode("latin-1").split(",")[-1].strip().lower()
            forwarded = self._client(hops)
            if forwarded is not None:
                scope = {**scope, "client": (str(forwarded), 0)}
            scheme = _SCHEMES[scope["type"]].get(proto or "")
            if scheme is not None:
                scope = {**scope, "scheme": scheme}
        await self.app(scope, receive, send)

    def _client(self, hops: list[str]) -> Address | None:
        """The rightmost hop no trusted proxy added (all trusted: the leftmost)."""
        found: Address | None = None
        for text in reversed(hops):
            address = self._parse(text)
            if address is None:
                return None  # a broken header names nobody; the peer stays the client
            found = address
            if not self._is_trusted(address):
                break
        return found
