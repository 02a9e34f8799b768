"""Who the client is: the TCP peer, unless the peer is a configured trusted proxy.

Through a real uvicorn server on loopback, configured as `bellhop cloud run`
configures it, because uvicorn by default believes `X-Forwarded-For` from
loopback peers: a throttled client could name any address it liked.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from bellhop_cloud.api.proxies import ForwardedHeaders
from bellhop_cloud.config import RelayConfig, load_config
from bellhop_cloud.errors import ConfigError
from starlette.types import Message, Receive, Scope, Send

from tests.cloud.serving import serving
from tests.cloud.support import PASSWORD, expect

FORWARDED = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


async def _blocked_then_forwarded(config: RelayConfig, name: str) -> tuple[int, Any]:
    """Block loopback by address, then log in with a forwarded address: (status, audit)."""
    config = config.model_copy(update={"login_address_limit": 3})
    email = f"{name}@example.com"
    with serving(config) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            user = {"email": email, "password": PASSWORD, "display_name": "Ana"}
            expect(await http.post("/v1/auth/register", json=user), 201)
            tokens = expect(
                await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}),
                200,
            )
            owner = {"Authorization": f"Bearer {tokens['access_token']}"}
            org = expect(await http.post("/v1/orgs", json={"name": "Seaside"}, headers=owner), 201)
            login = {"email": email, "password": PASSWORD}
            expect(await http.post("/v1/auth/login", json=login), 200)  # audited in the org
            wrong = {"email": f"x-{email}", "password": "wrong"}
            expect(await http.post("/v1/auth/login", json=wrong), 401)
            expect(await http.post("/v1/auth/login", json=login), 429)  # loopback is blocked
            forwarded = await http.post("/v1/auth/login", json=login, headers=FORWARDED)
            audit = expect(await http.get(f"/v1/orgs/{org['id']}/audit", headers=owner), 200)
    return forwarded.status_code, audit


async def test_forwarded_headers_are_ignored_without_a_trusted_proxy(
    relay_config: RelayConfig, test_name: str
) -> None:
    assert relay_config.trusted_proxies == ()
    status, audit = await _blocked_then_forwarded(relay_config, test_name)
    assert status == 429
    logins = [e["address"] for e in audit["items"] if e["action"] == "login.succeeded"]
    assert logins == ["127.0.0.1"]


async def test_a_trusted_proxy_names_the_client(relay_config: RelayConfig, test_name: str) -> None:
    config = relay_config.model_copy(update={"trusted_proxies": ("127.0.0.1/32",)})
    status, audit = await _blocked_then_forwarded(config, test_name)
    assert status == 200
    logins = [e["address"] for e in audit["items"] if e["action"] == "login.succeeded"]
    assert logins == ["203.0.113.7", "127.0.0.1"]  # newest first


async def test_a_peer_that_is_not_a_trusted_proxy_is_not_believed(
    relay_config: RelayConfig, test_name: str
) -> None:
    config = relay_config.model_copy(update={"trusted_proxies": ("10.0.0.0/8", "::1")})
    status, audit = await _blocked_then_forwarded(config, test_name)
    assert status == 429
    logins = [e["address"] for e in audit["items"] if e["action"] == "login.succeeded"]
    assert logins == ["127.0.0.1"]


async def _seen(trusted: tuple[str, ...], peer: str, headers: list[tuple[bytes, bytes]]) -> Scope:
    """The scope the app behind ForwardedHeaders sees."""
    seen: dict[str, Scope] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen["scope"] = scope

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    scope = {"type": "http", "client": (peer, 5000), "scheme": "http", "headers": headers}
    await ForwardedHeaders(app, trusted=trusted)(scope, receive, send)
    return seen["scope"]


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("10.0.0.5", b"203.0.113.7", "203.0.113.7"),
        # The rightmost address no trusted proxy added is the client; what the
        # client itself wrote further left is not believed.
        ("10.0.0.5", b"198.51.100.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"),
        ("10.0.0.5", b"10.0.0.8, 10.0.0.9", "10.0.0.8"),
        ("10.0.0.5", b"not-an-address", "10.0.0.5"),
        ("10.0.0.5", b"203.0.113.7\x00", "10.0.0.5"),
        ("10.0.0.5", b"2001:db8::1", "2001:db8::1"),
        ("192.0.2.1", b"203.0.113.7", "192.0.2.1"),  # not a trusted peer
    ],
)
async def test_forwarded_for_is_read_right_to_left(
    peer: str, forwarded_for: bytes, client: str
) -> None:
    scope = await _seen(
        ("10.0.0.0/8",),
        peer,
        [(b"x-forwarded-for", forwarded_for), (b"x-forwarded-proto", b"https")],
    )
    assert scope["client"][0] == client
    assert scope["scheme"] == ("https" if peer.startswith("10.") else "http")


async def test_several_forwarded_for_headers_are_one_list() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.9")]
    assert (await _seen(("10.0.0.0/8",), "10.0.0.5", headers))["client"][0] == "203.0.113.7"


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert RelayConfig(trusted_proxies=("10.0.0.1", "fd00::/8")).trusted_proxies == (
        "10.0.0.1/32",
        "fd00::/8",
    )
    with pytest.raises(ConfigError, match=r"trusted_proxies: .*proxy\.example\.com"):
        load_config(trusted_proxies=["10.0.0.1", "proxy.example.com"])
