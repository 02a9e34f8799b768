"""Live events' per-session limit (docs/live-events.md, "Limits and settings"): a session
holds at most `events_streams_per_session` streams on a node; one more is answered 429 with
Retry-After, and a stream that ends gives its place back.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.cloud.bridging import cloud_hotel
from tests.cloud.sse import STREAM, served, stream
from tests.cloud.support import Api
from tests.support.waiting import until

SQLITE_ONLY = pytest.mark.parametrize("backend", [("sqlite", None)], ids=["sqlite"])
PER_SESSION = 2


@pytest.fixture
def relay_settings() -> dict[str, Any]:
    return {"events_streams_per_session": PER_SESSION}


async def _refused(base: str, path: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": STREAM}
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        return await http.get(path, headers=headers)


@SQLITE_ONLY
async def test_a_session_past_its_streams_is_refused_until_one_closes(api: Api) -> None:
    hotel = await cloud_hotel(api)
    relay, owner = api.relay, hotel.owner
    other = await api.account("other-session")  # a separate session is not counted with it
    await api.grant(owner, hotel.org_id, other, "viewer", hotel_id=hotel.hotel_id)
    hotel_path = f"/v1/hotels/{hotel.hotel_id}/events"
    org_path = f"/v1/orgs/{hotel.org_id}/events"
    async with served(relay) as base:
        async with stream(base, hotel_path, owner.access_token):
            async with stream(base, org_path, owner.access_token):  # both forms count
                refused = await _refused(base, hotel_path, owner.access_token)
                assert refused.status_code == 429
                assert refused.json()["code"] == "rate_limited"
                assert "event streams" in refused.json()["detail"]
                assert int(refused.headers["Retry-After"]) >= 1
                async with stream(base, hotel_path, other.access_token):
                    pass  # another session opens as usual
                # A JSON page is no stream: never counted, never refused.
                page = await api.http.get(hotel_path, headers=owner.headers)
                assert page.status_code == 200
            # The closed stream's place is given back once its answer is over.
            await until(lambda: relay.live.open_streams == 1, 10, "the stream's answer over")
            async with stream(base, hotel_path, owner.access_token):
                pass
        await until(lambda: relay.live.open_streams == 0, 10, "every answer over")
