"""The relay's bridge endpoint under many gateways at once: handshakes past the admission
limit wait their turn instead of failing, a storm of handshakes all open, and shutting
down with many bridges open ends within its bound whatever the gateways do."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from bellhop_bridge import Opened, frames
from bellhop_cloud.db.schema import gateway_links, gateways
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import connect

from tests.cloud.bridging import CloudHotel, RawGateway, bridge_server, until


async def enrol_many(hotel: CloudHotel, count: int) -> list[tuple[str, Ed25519PrivateKey]]:
    """`count` more gateways of the hotel, written as enrolment writes them (no audit)."""
    now = datetime.now(UTC)
    made = [(f"gw_storm{i:04d}", Ed25519PrivateKey.generate()) for i in range(count)]
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    async with hotel.api.relay.store.write() as conn:
        await conn.execute(
            gateways.insert(),
            [
                {
                    "id": gateway_id,
                    "org_id": hotel.org_id,
                    "hotel_id": hotel.hotel_id,
                    "name": gateway_id,
                    "public_key": key.public_key().public_bytes(*raw),
                    "enrolled_at": now,
                    "enrolment_token_id": f"enr_{gateway_id}",
                }
                for gateway_id, key in made
            ],
        )
    return made


async def unanswered(gw: RawGateway) -> str:
    """The code of the relay's closing Error, its Challenge left unanswered."""
    async with asyncio.timeout(5):
        while True:
            frame = frames.decode(await gw.ws.recv())  # type: ignore[arg-type]
            if frame.WhichOneof("body") == "error":
                return frame.error.code


async def test_handshakes_past_the_limit_wait_their_turn(hotel: CloudHotel) -> None:
    async with bridge_server(hotel.api.relay, endpoint_options={"handshakes": 1}) as bridge:
        admission = bridge.endpoint.admission
        async with contextlib.AsyncExitStack() as stack:
            # The first takes the only slot and sits on the relay's challenge.
            first = await stack.enter_async_context(
                RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key)
            )
            await until(lambda: admission.busy == 1)
            (other_id, other_key), (late_id, late_key) = await enrol_many(hotel, 2)
            second = await stack.enter_async_context(
                RawGateway.opened(bridge.url, other_id, hotel.hotel_id, other_key)
            )
            await until(lambda: admission.waiting == 1)
            # The first finishes: the second's turn comes, and it opens.
            await first.until_event(Opened)
            await second.until_event(Opened)
            assert (admission.busy, admission.waiting) == (0, 0)
            # One that never finishes holds its slot only until its handshake timeout
            # (2 s here); then the next opens.
            stuck = await stack.enter_async_context(
                RawGateway.opened(bridge.url, late_id, hotel.hotel_id, late_key)
            )
            await until(lambda: admission.busy == 1)
            assert await unanswered(stuck) == "handshake_timeout"
            await until(lambda: admission.busy == 0)
            async with RawGateway.opened(
                bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key
            ) as again:
                await again.until_event(Opened)
    assert bridge.endpoint.closes.get("handshake_timeout") == 1
    assert "replaced" in bridge.endpoint.closes  # `again` took over the first's bridge


async def test_a_storm_of_handshakes_all_open(hotel: CloudHotel) -> None:
    fleet = await enrol_many(hotel, 60)
    async with bridge_server(hotel.api.relay, endpoint_options={"handshakes": 4}) as bridge:
        async with contextlib.AsyncExitStack() as stack:

            async def one(gateway_id: str, key: Ed25519PrivateKey) -> None:
                gw = await stack.enter_async_context(
                    RawGateway.opened(bridge.url, gateway_id, hotel.hotel_id, key)
                )
                await gw.until_event(Opened, timeout=10)

            await asyncio.gather(*(one(g, k) for g, k in fleet))
            assert bridge.endpoint.connected == len(fleet)
        await until(lambda: bridge.endpoint.connected == 0)
        # Identities are looked up in batches, not one query per handshake.
        assert bridge.endpoint.identities.queries < len(fleet)
    assert "handshake_timeout" not in bridge.endpoint.closes
    async with hotel.api.relay.store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(gateway_links.c.connected, gateway_links.c.close_reason).where(
                    gateway_links.c.gateway_id.in_([g for g, _ in fleet])
                )
            )
        ).all()
    assert len(rows) == len(fleet)
    assert {tuple(r) for r in rows} == {(False, "connection_lost")}


async def test_shutting_down_with_many_bridges_ends_within_its_bound(hotel: CloudHotel) -> None:
    fleet = await enrol_many(hotel, 80)
    within_s = 1.0
    server = bridge_server(hotel.api.relay, endpoint_options={"close_within_s": within_s})
    async with contextlib.AsyncExitStack() as clients:
        bridge = await server.__aenter__()
        try:
            gateways: list[RawGateway] = []
            for gateway_id, key in fleet:
                gw = await clients.enter_async_context(
                    RawGateway.opened(bridge.url, gateway_id, hotel.hotel_id, key)
                )
                await gw.until_event(Opened)
                gateways.append(gw)
            # Half of them stop reading: they will never answer the relay's close.
            for gw in gateways[::2]:
                gw.ws.transport.pause_reading()
        finally:
            began = time.monotonic()
            await server.__aexit__(None, None, None)
            took = time.monotonic() - began
        for gw in gateways[::2]:
            gw.ws.transport.resume_reading()
    assert took < within_s + 2.0, took
    assert bridge.endpoint.closes["shutting_down"] == len(fleet)
    async with hotel.api.relay.store.read() as conn:
        rows = (
            await conn.execute(
                sa.select(gateway_links.c.connected, gateway_links.c.close_reason).where(
                    gateway_links.c.gateway_id.in_([g for g, _ in fleet])
                )
            )
        ).all()
    assert {tuple(r) for r in rows} == {(False, "shutting_down")}


async def test_sockets_that_never_say_hello_hold_no_handshake_slot(hotel: CloudHotel) -> None:
    """Anyone can open a WebSocket to the bridge port; until it sends a Hello it waits
    outside the admission limit, so silent sockets cannot keep gateways out."""
    async with (
        bridge_server(hotel.api.relay, endpoint_options={"handshakes": 1}) as bridge,
        contextlib.AsyncExitStack() as stack,
    ):
        admission = bridge.endpoint.admission
        for _ in range(5):
            await stack.enter_async_context(connect(bridge.url, compression=None))
        await until(lambda: len(bridge.endpoint._conns) == 5)
        assert (admission.busy, admission.waiting) == (0, 0)
        async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw:
            await gw.until_event(Opened)
        # Opened while the silent ones are still there, none of them timed out first.
        assert sum(link.identity is None for link in bridge.endpoint._conns) == 5
        assert bridge.endpoint.closes.get("handshake_timeout", 0) == 0
