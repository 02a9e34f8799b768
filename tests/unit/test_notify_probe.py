"""Probing the notification channels: targets a relay must not reach, masks that must
hide every secret, receivers that hang, redirect or answer garbage, and the gateway's
`[notify]` section given hostile values."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import AsyncIterator, Callable

import pytest
from bellhop_bridge import notify_channels as channels
from bellhop_edge.config import NotifyConfig, load_config
from bellhop_edge.errors import ConfigError

from tests.support.webhook import WebhookReceiver

LOOPBACK = channels.Reach((ipaddress.ip_network("127.0.0.0/8"),))


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1/x",
        "json://2130706433/x",  # 127.0.0.1 as one number: the resolver takes it
        "jsons://169.254.169.254/latest/meta-data",
        "json://[::1]:8080/x",
        "json://[::ffff:127.0.0.1]/x",
        "form://10.0.0.5/x",
        "json://localhost/x",
        "json://api.localhost/x",
        "mailto://user:pw@example.com?smtp=127.0.0.1&to=a@example.com",
        "ntfy://192.168.1.1/topic",
    ],
)
def test_a_private_target_is_refused_by_default_and_allowed_when_listed(url: str) -> None:
    why = channels.check_url(url)
    assert why is not None
    assert "private" in why
    assert "127" not in why
    assert "169" not in why
    assert channels.check_url(url, channels.LAN) is None
    everything = channels.Reach((ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))
    assert channels.check_url(url, everything) is None


@pytest.mark.parametrize(
    "url",
    [
        "json://hooks.example.com/x",
        "json://93.184.216.34/x",
        "tgram://123456:token/987",
        "ntfy://a-topic",
        "mailtos://user:pw@mail.example.com?to=a@example.com",
    ],
)
def test_a_public_or_named_target_passes_the_check(url: str) -> None:
    assert channels.check_url(url) is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ntfy://secret-topic-name", "ntfy://***"),  # the topic is the secret on ntfy.sh
        ("ntfy://secret-topic-name/", "ntfy://***"),
        ("ntfy://ntfy.example.com/secret-topic", "ntfy://ntfy.example.com/***"),
        ("json://[::1]:8080/x", "json://[::1]:8080/***"),
        ("json://hooks.example.com#secret", "json://hooks.example.com/***"),
        ("json://user:secret@hooks.example.com/x?token=secret", "json://***@hooks.example.com/***"),
    ],
)
def test_the_mask_hides_every_secret(url: str, shown: str) -> None:
    assert channels.masked(url) == shown
    assert "secret" not in channels.masked(url)


async def test_the_relay_never_sends_to_a_private_address_it_does_not_list() -> None:
    async with WebhookReceiver() as hook:
        url = hook.apprise_url("/x")
        why = await asyncio.to_thread(channels.send, url, "t", "b", "k")
        assert why is not None
        assert "private" in why
        assert await asyncio.to_thread(channels.send, url, "t", "b", "k", LOOPBACK) is None
        (received,) = await hook.wait_for(1)
        assert received.key == "k"


async def test_a_name_that_does_not_resolve_is_a_fixed_text() -> None:
    url = "json://no-such-host.invalid/x"
    assert channels.check_url(url) is None  # checked when sent: a name's address changes
    why = await asyncio.to_thread(channels.send, url, "t", "b", "k")
    assert why == "the target's name does not resolve"
    assert await asyncio.to_thread(channels.send, url, "t", "b", "k", channels.LAN) is not None


@contextlib.asynccontextmanager
async def answering(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], object],
) -> AsyncIterator[int]:
    """A loopback HTTP server whose every connection `answer` handles."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            result = answer(reader, writer)
            if asyncio.iscoroutine(result):
                await result
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def test_a_redirect_is_not_followed_outside_the_lan() -> None:
    async with WebhookReceiver() as inner:
        target = f"http://127.0.0.1:{inner.apprise_url().split(':')[2].split('/')[0]}/x"

        async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()

        async with answering(redirect) as port:
            url = f"json://127.0.0.1:{port}/x"
            why = await asyncio.to_thread(channels.send, url, "t", "b", "k", LOOPBACK)
            assert why is not None
            assert not inner.requests


async def test_garbage_and_a_hang_are_failures_not_crashes() -> None:
    def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\xff not http at all\r\n\r\n" * 1000)

    async with answering(garbage) as port:
        why = await asyncio.to_thread(
            channels.send, f"json://127.0.0.1:{port}/x", "t", "b", "k", channels.LAN
        )
        assert why == "the channel did not accept it"

    release = asyncio.Event()

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()

    async with answering(hang) as port:
        started = time.monotonic()
        # Apprise's own read timeout is the bound: a hung receiver is a failure.
        why = await asyncio.to_thread(
            channels.send, f"json://127.0.0.1:{port}/x?rto=0.5&cto=0.5", "t", "b", "k", channels.LAN
        )
        release.set()
        assert why == "the channel did not accept it"
        assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "url",
    [
        "json://hooks.example.com/\x00x",
        "json://hooks.example.com/" + "x" * 5000,
        "json://h\u00e9.example/x",
        "json://\u202ehooks.example.com/x",
        "file:///etc/passwd",
        "windows://",
        "json:/hooks.example.com",
        "",
    ],
)
def test_the_gateway_refuses_a_hostile_channel_naming_the_field(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(overrides={"hotel_id": "h1", "notify": {"channels": [url]}})
    message = str(caught.value)
    assert "  notify.channels.0: " in message, message
    assert "example" not in message
    assert "passwd" not in message


@pytest.mark.parametrize("bad", ["\x00", "\x1b[2J", "\u202e", "\u200b", " ", "\n", "\x85"])
def test_a_channel_with_control_or_invisible_characters_is_refused(bad: str) -> None:
    why = channels.check_url(f"json://hooks.example.com/a{bad}b", channels.LAN)
    assert why == "no white space, control or invisible characters"


def test_the_gateways_lan_channel_may_reach_private_addresses() -> None:
    config = NotifyConfig(channels=("json://192.168.1.20:8080/alerts",))  # type: ignore[arg-type]
    assert len(config.channels) == 1
