"""The LAN channel's keepalive, on real processes: the gateway confirms a stream's
subscription (so an event reported right after is delivered), accepts the SDK's pings on
an idle stream without a GOAWAY, and a link that goes silent without closing (a proxy that
blackholes everything) fails the idle stream with `Unreachable` within the keepalive bound,
with no call in flight and no prober to notice."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from bellhop_sdk import Event, Gap
from bellhop_sdk.auth import StaticToken
from bellhop_sdk.errors import Unreachable
from bellhop_sdk.lan import LanTransport

from tests.sdk.conftest import THERMOSTAT, SdkSite
from tests.support.link_proxy import LinkProxy

KEEPALIVE_S = 2.0  # the gateway accepts pings once a second
KEEPALIVE_TIMEOUT_S = 1.0
MARGIN_S = 3.0  # a loaded machine's scheduling, on top of the bound


async def reported(site: SdkSite, items: asyncio.Queue[Event | Gap | BaseException]) -> None:
    """The thermostat reports once; returns when the stream delivered that report."""
    ts = await site.devices.report_state(THERMOSTAT, {"temperature": 20.0 + time.time() % 1})
    async with asyncio.timeout(10):
        while True:
            item = await items.get()
            assert not isinstance(item, BaseException), f"the stream failed: {item!r}"
            if isinstance(item, Event) and item.kind == "state" and item.key[2] == str(ts):
                return


async def test_a_silent_link_fails_an_idle_stream_within_the_keepalive_bound(
    sdk_site: SdkSite,
) -> None:
    proxy = LinkProxy()
    await proxy.start()
    proxy.target_port = sdk_site.lan_port
    lan = LanTransport(
        f"127.0.0.1:{proxy.port}",
        StaticToken(sdk_site.lan_token),
        keepalive_s=KEEPALIVE_S,
        keepalive_timeout_s=KEEPALIVE_TIMEOUT_S,
    )
    opened: asyncio.Queue[bool] = asyncio.Queue()
    items: asyncio.Queue[Event | Gap | BaseException] = asyncio.Queue()
    stream = lan.events(sdk_site.hotel_id, on_open=opened.put_nowait)

    async def follow(events: AsyncIterator[Event | Gap]) -> None:
        try:
            async for item in events:
                items.put_nowait(item)
        except Exception as exc:  # what ended the stream, for the test to judge
            items.put_nowait(exc)

    follower = asyncio.create_task(follow(stream))
    try:
        # The gateway says when the stream is subscribed: a report made then arrives.
        assert await asyncio.wait_for(opened.get(), 10) is True
        await reported(sdk_site, items)
        # Idle for three keepalive periods: the gateway takes the pings (no GOAWAY
        # "too_many_pings", which would end the stream) and the stream still delivers.
        with contextlib.suppress(TimeoutError):
            extra = await asyncio.wait_for(items.get(), 3 * KEEPALIVE_S)
            assert not isinstance(extra, BaseException), f"the idle stream ended: {extra!r}"
        assert not follower.done()
        await reported(sdk_site, items)
        assert opened.empty(), "the stream was opened again"

        proxy.blackhole()  # nothing passes and nothing closes
        cut = time.monotonic()
        async with asyncio.timeout(KEEPALIVE_S + KEEPALIVE_TIMEOUT_S + MARGIN_S + 5):
            while not isinstance(ended := await items.get(), BaseException):
                pass
        noticed = time.monotonic() - cut
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await lan.aclose()
        await proxy.close()
    assert isinstance(ended, Unreachable), repr(ended)
    bound = KEEPALIVE_S + KEEPALIVE_TIMEOUT_S + MARGIN_S
    assert noticed <= bound, f"the dead link was noticed after {noticed:.1f} s (bound {bound} s)"
