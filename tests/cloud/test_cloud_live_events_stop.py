"""Live events when the relay stops (docs/live-events.md, "When the relay stops"): every
open stream ends with `shutting_down` and completes, instead of being cut or waited out.
"""

from __future__ import annotations

import time

import pytest
from bellhop_cloud.live.stream import Watch, _Run

from tests.cloud.bridging import cloud_hotel
from tests.cloud.sse import events, served, stream
from tests.cloud.support import Api

SQLITE_ONLY = pytest.mark.parametrize("backend", [("sqlite", None)], ids=["sqlite"])


@SQLITE_ONLY
async def test_a_stopping_server_ends_each_open_stream_with_shutting_down(api: Api) -> None:
    """uvicorn runs the app's shutdown only once its connections are closed: the streams
    are told of the stop before that, and complete instead of being cut or waited out."""
    hotel = await cloud_hotel(api)
    relay, token = api.relay, hotel.owner.access_token
    server = served(relay)
    base = await server.__aenter__()
    took: float | None = None
    try:
        async with (
            stream(base, f"/v1/hotels/{hotel.hotel_id}/events", token) as of_hotel,
            stream(base, f"/v1/orgs/{hotel.org_id}/events", token) as of_org,
        ):
            started = time.monotonic()
            await server.__aexit__(None, None, None)  # should_exit, as on SIGTERM
            took = time.monotonic() - started
            for watcher in (of_hotel, of_org):
                rest = await watcher.rest()  # read to a clean end: a cut would raise
                assert [m.event for m in events(rest)] == ["end"], rest
                assert events(rest)[0].json()["reason"] == "shutting_down"
    finally:
        if took is None:  # the test failed before stopping it
            await server.__aexit__(None, None, None)
    assert took < 2, f"the server waited {took:.1f} s: its graceful timeout, not the streams"
    assert relay.live.subscribers == 0


@SQLITE_ONLY
async def test_a_stream_told_to_stop_before_it_subscribed_ends_once_it_has(api: Api) -> None:
    hotel = await cloud_hotel(api)

    async def fine() -> None:
        return None

    watch = Watch(
        expires_at=time.time() + 60,
        key=("s", "u", "hotel", hotel.hotel_id),
        fetch=fine,
        apply=lambda _found: None,
        visible=lambda _entry: True,
    )
    run = _Run(api.relay.live, hotel.org_id, hotel.hotel_id, watch)
    run.stop("shutting_down")
    sent = [event async for event in run.events(None)]
    assert [(e.comment, e.event) for e in sent] == [("open", None), (None, "end")]
    assert '"reason":"shutting_down"' in str(sent[-1].data)
    assert api.relay.live.subscribers == 0
    assert len(api.relay.live.rechecks) == 0
