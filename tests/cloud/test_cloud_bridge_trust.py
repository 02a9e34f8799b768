"""The relay's token keys reach the gateway in every Welcome, and the gateway caches
them where its LAN API reads them (DATA_DIR/bridge/jwks.json)."""

from __future__ import annotations

import json

from bellhop_bridge import Opened
from bellhop_cloud.auth.tokens import EDGE_AUDIENCE
from bellhop_edge.bridge import trust
from bellhop_edge.bridge.identity import Identity
from bellhop_edge.gateway import Gateway

from tests.cloud.bridging import Bridge, CloudHotel, EdgeSite, RawGateway, until
from tests.cloud.support import expect


async def test_every_welcome_carries_the_relays_keys_issuer_audience_and_the_org(
    hotel: CloudHotel, bridge: Bridge
) -> None:
    published = expect(await hotel.api.http.get("/.well-known/jwks.json"), 200)
    for _ in range(2):  # each connection, not only the first
        async with RawGateway.opened(
            bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key
        ) as raw:
            opened: Opened = await raw.until_event(Opened)
        sent = opened.token_trust
        assert sent is not None
        assert json.loads(sent.jwks) == published
        assert sent.issuer == hotel.api.relay.config.issuer
        assert sent.audience == EDGE_AUDIENCE
        assert sent.org_id == hotel.org_id
        # What the gateway accepts at its boundary.
        assert trust.validate(sent)["keys"][0]["kid"] == published["keys"][0]["kid"]


async def test_a_gateway_caches_them_before_its_bridge_counts_as_open(
    hotel: CloudHotel, site: EdgeSite, bridge: Bridge
) -> None:
    config = site.config(bridge.url)
    cache = Identity.directory(config.data_dir) / trust.FILE_NAME
    assert not cache.exists()
    async with Gateway(config) as gateway:
        await until(lambda: gateway.bridge is not None and gateway.bridge.stats.opens == 1)
        doc = trust.read(cache)
        assert doc is not None
        assert doc["org_id"] == hotel.org_id
        assert doc["audience"] == EDGE_AUDIENCE
        assert cache.stat().st_mode & 0o777 == 0o600
    first = cache.stat().st_mtime_ns
    # The same keys at the next start: the file is left as it was (nothing to reload).
    async with Gateway(config) as gateway:
        await until(lambda: gateway.bridge is not None and gateway.bridge.stats.opens == 1)
    assert cache.stat().st_mtime_ns == first
    assert [p.name for p in cache.parent.iterdir() if p.name.startswith(".jwks")] == []
