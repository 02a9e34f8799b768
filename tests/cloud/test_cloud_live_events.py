"""Live events for remote managers (docs/live-events.md): the log and queues alone, then the
SSE stream of a real relay under uvicorn, fed by a real bridge or by `LiveEvents.publish`,
then two relay nodes sharing Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import Acked, Opened
from bellhop_cloud.bridge.plan import Plan
from bellhop_cloud.config import BusBackend, RelayConfig
from bellhop_cloud.live import LiveEvent, plan_events
from bellhop_cloud.live.events import Entry, parse_id
from bellhop_cloud.live.log import GAP, Draft, EventLog, Fanout, Subscription
from bellhop_cloud.live.redis_log import _entry as redis_entry
from bellhop_cloud.relay import Relay
from redis.asyncio import Redis

from tests.cloud.bridging import BULK, PRIORITY, RawGateway, bridge_server, cloud_hotel, until
from tests.cloud.sse import Message, answered, drain, events, served, stream
from tests.cloud.support import Api, expect
from tests.support.redis import REDIS_URL, require_redis

# Small numbers so that every limit is reached quickly.
LIVE: dict[str, Any] = {
    "events_replay": 5,
    "events_heartbeat_s": 0.3,
    "events_recheck_s": 0.2,
    "events_queue_max": 8,
}
SQLITE_ONLY = pytest.mark.parametrize("backend", [("sqlite", None)], ids=["sqlite"])


@pytest.fixture
def relay_settings() -> dict[str, Any]:
    return LIVE


def draft(n: int, hotel_id: str = "h1") -> Draft:
    return Draft(hotel_id, "r1", "state", f'{{"n": {n}}}')


def state(n: int, room_id: str | None = "r1") -> LiveEvent:
    return LiveEvent("state", {"device_id": f"d{n}", "values": {"n": n}}, room_id=room_id)


def number(message: Message) -> int:
    return int(message.json()["data"]["values"]["n"])


def states(messages: list[Message]) -> list[int]:
    return [number(m) for m in messages if m.event == "state"]


# -- the log and the queues, without I/O -------------------------------------------------------


def test_ids_rise_even_when_the_clock_goes_back_and_the_log_is_bounded() -> None:
    log = EventLog(capacity=3, start=(1000, 0))
    first = log.append(1000, [draft(0), draft(1)])
    later = log.append(900, [draft(2)])  # the clock went back
    after = log.append(2000, [draft(3), draft(4)])
    keys = [e.key for e in [*first, *later, *after]]
    assert keys == [(1000, 0), (1000, 1), (1000, 2), (2000, 0), (2000, 1)]
    assert [e.id for e in log.entries] == ["1000-2", "2000-0", "2000-1"]
    assert log.evicted == (1000, 1)
    assert parse_id("2000-1") == (2000, 1)
    assert parse_id("2000") is None
    assert parse_id("1-2-3") is None


def test_resume_gives_what_follows_an_id_and_says_when_some_is_gone() -> None:
    log = EventLog(capacity=3, start=(1000, 0))
    log.append(1000, [draft(n) for n in range(5)])  # keeps 1000-2 .. 1000-4
    resumed = log.resume((1000, 2))
    assert (resumed.gap, [e.id for e in resumed.entries]) == (False, ["1000-3", "1000-4"])
    assert log.resume((1000, 4)).entries == []
    assert not log.resume((1000, 4)).gap
    # 1000-1 was seen, 1000-2 is kept: nothing lost. 1000-0 seen: 1000-1 is gone.
    assert not log.resume((1000, 1)).gap
    older = log.resume((1000, 0))
    assert older.gap
    assert [e.id for e in older.entries] == ["1000-2", "1000-3", "1000-4"]
    # Ids this log never issued: before it started, or past its newest.
    assert log.resume((999, 7)).gap
    assert log.resume((5000, 0)).gap
    assert EventLog(capacity=3, start=(1000, 0)).resume((1000, 0)).gap
    assert [e.id for e in log.tail(2)] == ["1000-3", "1000-4"]


async def test_a_queue_that_overflows_is_emptied_and_dropped() -> None:
    fanout = Fanout()
    slow, other_hotel = Subscription("o1", "h1", maxsize=4), Subscription("o1", "h2", maxsize=4)
    fanout.add(slow)
    fanout.add(other_hotel)
    log = EventLog(capacity=100, start=(0, 0))
    fanout.deliver("o1", log.append(1, [draft(n) for n in range(4)]))
    assert len(slow) == 4
    assert len(other_hotel) == 0  # another hotel's watcher holds nothing of h1
    fanout.deliver("o1", log.append(2, [draft(4)]))
    assert slow.overflowed
    assert len(slow) == 0
    assert slow not in fanout.by_org["o1"]
    fanout.deliver("o1", log.append(3, [draft(n) for n in range(100)]))
    assert len(slow) == 0
    assert await slow.next(1.0) == "slow_consumer"
    fanout.gap("o1")
    assert await other_hotel.next(1.0) is GAP
    assert await other_hotel.next(0.01) is None
    fanout.end_all("shutting_down")
    assert await other_hotel.next(1.0) == "shutting_down"


def test_a_batch_gives_state_alert_command_and_desired_events_but_no_telemetry() -> None:
    def event(seq: int) -> bridge_pb2.OutboxEvent:
        return bridge_pb2.OutboxEvent(seq=seq, lane=BULK)

    batch = [event(n) for n in range(1, 7)]
    batch[0].telemetry.device_id, batch[0].telemetry.metric = "t1", "humidity"
    batch[0].telemetry.ts.FromMilliseconds(1_700_000_000_000)
    batch[1].device.device_id, batch[1].device.room_id = "t1", "101"
    batch[1].device.registered = True
    batch[2].state.device_id = "t1"
    batch[2].state.values.update({"setpoint": 21.5})
    batch[2].state.updated_at.FromMilliseconds(1_700_000_000_000)
    batch[3].state.device_id = "t2"  # no registry change in this batch: room looked up later
    batch[4].alert.alert_id, batch[4].alert.device_id = "a1", "door"
    batch[4].alert.room_id, batch[4].alert.state = "102", common_pb2.ALERT_STATE_RAISED
    batch[5].command_result.command_id, batch[5].command_result.device_id = "c1", "t1"
    batch[5].command_result.status = common_pb2.COMMAND_STATUS_SUCCEEDED
    found = plan_events(Plan.of(batch, "h1"))
    assert [(e.kind, e.room_id) for e in found] == [
        ("device", "101"),
        ("state", "101"),
        ("state", None),
        ("alert", "102"),
        ("command", "101"),
    ]
    assert found[1].data == {
        "device_id": "t1",
        "values": {"setpoint": 21.5},
        "updated_at": "2023-11-14T22:13:20.000Z",
    }
    assert found[3].data["state"] == "raised"
    assert "hotel_id" not in found[3].data


# -- the stream of a real relay ----------------------------------------------------------------


def outbox(seq: int, lane: bridge_pb2.Lane.ValueType = BULK) -> bridge_pb2.OutboxEvent:
    return bridge_pb2.OutboxEvent(seq=seq, lane=lane)


async def test_a_manager_sees_a_state_change_and_an_alert_after_a_bridge_batch(api: Api) -> None:
    hotel = await cloud_hotel(api)
    relay = api.relay
    device, registered, reported = outbox(1), outbox(2), outbox(3, PRIORITY)
    device.device.device_id, device.device.room_id = "r101-thermo", "r101"
    device.device.registered = True
    registered.state.device_id = "r101-thermo"
    registered.state.values.update({"setpoint": 22.5})
    registered.state.updated_at.FromMilliseconds(1_700_000_000_000)
    reported.alert.alert_id, reported.alert.device_id = "al-1", "r101-door"
    reported.alert.room_id, reported.alert.kind = "r101", common_pb2.ALERT_KIND_BREACH
    reported.alert.state = common_pb2.ALERT_STATE_RAISED
    reported.alert.raised_at.FromMilliseconds(1_700_000_000_000)
    path = f"/v1/hotels/{hotel.hotel_id}/events"
    async with (
        served(relay) as base,
        bridge_server(relay) as bridge,
        stream(base, path, hotel.owner.access_token) as live,
    ):
        async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as gw:
            await gw.until_event(Opened)
            await gw.send_batch([device, registered, reported])
            await gw.until_event(Acked)
            seen = events(await live.until(lambda m: m.event == "alert"))
        closed = events(await live.until(lambda m: m.event == "gateway"))
    assert [m.event for m in seen] == ["gateway", "device", "state", "alert"]
    opened, _, changed, alert = (m.json() for m in seen)
    assert opened["data"] == {"gateway_id": hotel.gateway_id, "connected": True, "reason": "open"}
    assert changed["room_id"] == "r101"
    assert changed["hotel_id"] == hotel.hotel_id
    assert changed["data"]["values"] == {"setpoint": 22.5}
    assert changed["at"].endswith("Z")
    assert (alert["room_id"], alert["data"]["kind"], alert["data"]["state"]) == (
        "r101",
        "breach",
        "raised",
    )
    assert closed[-1].json()["data"]["connected"] is False
    keys = [parse_id(m.id or "") or (0, 0) for m in [*seen, *closed]]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    # Without `Accept: text/event-stream`: what the log holds, as one JSON page.
    page = expect(await api.http.get(path, headers=hotel.owner.headers), 200)
    assert [i["kind"] for i in page["items"]] == ["gateway", "device", "state", "alert", "gateway"]
    assert page["items"][2]["data"]["values"] == {"setpoint": 22.5}
    assert page["last_event_id"] == page["items"][-1]["id"]


@SQLITE_ONLY
async def test_a_room_limited_viewer_sees_only_their_rooms(api: Api) -> None:
    hotel = await cloud_hotel(api)
    relay, owner = api.relay, hotel.owner
    viewer, outsider = await api.account("viewer"), await api.account("outsider")
    await api.grant(owner, hotel.org_id, viewer, "viewer", hotel_id=hotel.hotel_id, rooms=["r000"])
    other_hotel = await api.hotel(owner, hotel.org_id, "Porto")
    await api.seed_devices(hotel.hotel_id, 4, rooms=2)  # dev-0000, dev-0002 in r000
    gone = {"gateway_id": hotel.gateway_id, "connected": False, "reason": "connection_lost"}
    published = [
        LiveEvent("state", {"device_id": "dev-0001", "values": {"n": 1}}),  # r001
        LiveEvent("state", {"device_id": "dev-0000", "values": {"n": 0}}),  # r000
        LiveEvent("alert", {"alert_id": "a1"}),  # no room: hotel-wide readers only
        LiveEvent("alert", {"alert_id": "a2"}, room_id="r001"),
        LiveEvent("gateway", gone),  # every reader of the hotel
        LiveEvent("desired", {"device_id": "dev-0002", "values": {"on": True}}),  # r000
    ]
    hotel_path, org_path = f"/v1/hotels/{hotel.hotel_id}/events", f"/v1/orgs/{hotel.org_id}/events"
    async with (
        served(relay) as base,
        stream(base, hotel_path, viewer.access_token) as mine,
        stream(base, org_path, viewer.access_token) as mine_in_org,
        stream(base, org_path, owner.access_token) as everything,
    ):
        await relay.live.publish(other_hotel, [state(7, room_id="r000")])
        await relay.live.publish(hotel.hotel_id, published)

        def last(message: Message) -> bool:
            return message.event == "desired"

        for watcher in (mine, mine_in_org):
            seen = [(m.event, m.json()["room_id"]) for m in events(await watcher.until(last))]
            assert seen == [("state", "r000"), ("gateway", None), ("desired", "r000")]
        seen = [(m.event, m.json()["hotel_id"]) for m in events(await everything.until(last))]
        assert len(seen) == 7
        assert seen[0] == ("state", other_hotel)
    # Outsiders learn nothing, stream or page.
    sse = {**outsider.headers, "Accept": "text/event-stream"}
    for path in (hotel_path, org_path):
        response = await api.http.get(path, headers=sse)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    page = expect(await api.http.get(hotel_path, headers=viewer.headers), 200)
    assert [i["kind"] for i in page["items"]] == ["state", "gateway", "desired"]


@SQLITE_ONLY
async def test_resume_gives_exactly_what_followed_and_a_gap_when_too_old(api: Api) -> None:
    hotel = await cloud_hotel(api)
    relay, token = api.relay, hotel.owner.access_token
    path = f"/v1/hotels/{hotel.hotel_id}/events"
    async with served(relay) as base:
        async with stream(base, path, token) as first:
            await relay.live.publish(hotel.hotel_id, [state(n) for n in range(3)])
            seen = events(await first.until(lambda m: m.event == "state" and number(m) == 2))
        ids = [m.id or "" for m in seen]
        await relay.live.publish(hotel.hotel_id, [state(3), state(4)])  # nobody watching
        # What is published while the stream reads the log reaches it once, not twice.
        reading = relay.live.resume

        async def resume_while_publishing(org_id: str, after: Any) -> Any:
            await relay.live.publish(hotel.hotel_id, [state(5)])
            return await reading(org_id, after)

        relay.live.resume = resume_while_publishing  # type: ignore[method-assign]
        async with stream(base, path, token, last_event_id=ids[1]) as again:
            await relay.live.publish(hotel.hotel_id, [state(6)])
            resumed = await again.until(lambda m: m.event == "state" and number(m) == 6)
        relay.live.resume = reading  # type: ignore[method-assign]
        assert states(resumed) == [2, 3, 4, 5, 6]
        assert "gap" not in [m.event for m in resumed]
        # The log keeps 5: an id older than that starts with a gap, then what is kept.
        await relay.live.publish(hotel.hotel_id, [state(n) for n in range(7, 12)])
        async with stream(base, path, token, last_event_id=ids[0]) as late:
            await relay.live.publish(hotel.hotel_id, [state(12)])
            behind = events(await late.until(lambda m: m.event == "state" and number(m) == 12))
        assert behind[0].event == "gap"
        assert behind[0].json()["last_event_id"] == ids[0]
        assert states(behind) == [7, 8, 9, 10, 11, 12]
        # An id this relay never issued is older than anything kept.
        async with stream(base, path, token, last_event_id="not-an-id") as unknown:
            assert events(await unknown.until(lambda m: m.event == "gap"))
        # One newer than any it issued (its clock stepped back): a gap, all held, then live.
        async with stream(base, path, token, last_event_id="9999999999999-0") as ahead:
            await relay.live.publish(hotel.hotel_id, [state(13)])
            after_gap = events(await ahead.until(lambda m: m.event == "state" and number(m) == 13))
        assert after_gap[0].event == "gap"
        assert states(after_gap) == [8, 9, 10, 11, 12, 13]
    response = await api.http.get(path, headers={**hotel.owner.headers, "Last-Event-ID": "1\x7f-0"})
    assert (response.status_code, response.json()["code"]) == (422, "invalid_request")
    page = expect(
        await api.http.get(path, headers={**hotel.owner.headers, "Last-Event-ID": ids[0]}), 200
    )
    assert page["gap"] is True


@SQLITE_ONLY
async def test_heartbeats_keep_an_idle_stream_alive(api: Api) -> None:
    hotel = await cloud_hotel(api)
    async with (
        served(api.relay) as base,
        stream(base, f"/v1/hotels/{hotel.hotel_id}/events", hotel.owner.access_token) as idle,
    ):
        beats = await idle.until(lambda m: m.comments == ["heartbeat"], timeout=5)
    assert beats[-1].event is None


@SQLITE_ONLY
async def test_the_stream_ends_when_the_token_expires_or_the_session_or_access_ends(
    api: Api,
) -> None:
    hotel = await cloud_hotel(api)
    relay, owner = api.relay, hotel.owner
    viewer = await api.account("viewer")
    grant = await api.grant(owner, hotel.org_id, viewer, "viewer", hotel_id=hotel.hotel_id)
    path = f"/v1/hotels/{hotel.hotel_id}/events"
    session = relay.tokens.verify(owner.access_token).session_id
    ttl = relay.config.access_token_ttl_s
    # A token of the owner's live session with a second or two left.
    short = relay.tokens.issue(owner.user_id, session, now=time.time() - ttl + 2).token

    def ended(messages: list[Message]) -> str:
        last = events(messages)[-1]
        assert last.event == "end", messages
        return str(last.json()["reason"])

    async with served(relay) as base:
        expires_at = relay.tokens.verify(short).expires_at
        async with stream(base, path, short) as expiring:
            assert ended(await expiring.rest()) == "token_expired"
        assert expires_at <= time.time() < expires_at + 5
        async with stream(base, f"/v1/orgs/{hotel.org_id}/events", viewer.access_token) as cut:
            url = f"/v1/orgs/{hotel.org_id}/grants/{grant['id']}"
            expect(await api.http.delete(url, headers=owner.headers), 204)
            assert ended(await cut.rest()) == "access_revoked"
        async with stream(base, path, owner.access_token) as leaving:
            body = {"refresh_token": owner.refresh_token}
            expect(await api.http.post("/v1/auth/logout", json=body), 204)
            assert ended(await leaving.rest()) == "session_ended"
    assert relay.live.subscribers == 0


@SQLITE_ONLY
async def test_a_consumer_that_falls_behind_is_cut_with_a_reason(api: Api) -> None:
    hotel = await cloud_hotel(api)
    relay = api.relay
    async with (
        served(relay) as base,
        stream(base, f"/v1/hotels/{hotel.hotel_id}/events", hotel.owner.access_token) as slow,
    ):
        assert relay.live.subscribers == 1
        # More at once than its queue (8) holds: it is dropped there and then.
        await relay.live.publish(hotel.hotel_id, [state(n) for n in range(50)])
        assert relay.live.subscribers == 0
        rest = await slow.rest()
    assert [m.event for m in events(rest)] == ["end"]
    assert events(rest)[0].json()["reason"] == "slow_consumer"


@SQLITE_ONLY
async def test_a_consumer_that_never_reads_is_cut_and_holds_no_memory(api: Api) -> None:
    hotel = await cloud_hotel(api)
    relay = api.relay
    big = "x" * 65_536
    headers = {"Authorization": f"Bearer {hotel.owner.access_token}", "Accept": "text/event-stream"}
    async with (
        served(relay) as base,
        httpx.AsyncClient(base_url=base, timeout=10) as http,
        http.stream("GET", f"/v1/hotels/{hotel.hotel_id}/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        await until(lambda: relay.live.subscribers == 1)
        # Never read: once the sockets' buffers are full, its queue fills and overflows.
        for n in range(1000):
            if relay.live.subscribers == 0:
                break
            await relay.live.publish(hotel.hotel_id, [LiveEvent("state", {"n": n, "pad": big})])
            await asyncio.sleep(0.005)
        assert relay.live.subscribers == 0
        sent_mib = n * len(big) / 2**20
        assert sent_mib < 60, f"{sent_mib:.0f} MiB went out before the cut"
        # Unread, its last send cannot finish: within two heartbeats the relay gives up on
        # it and the request is over, while the client still has not read a byte.
        await until(lambda: answered(relay, "/v1/hotels/{hotel_id}/events") == 1)
        assert await asyncio.wait_for(drain(response), 20) is None  # cut, not ended


# -- several relay nodes -----------------------------------------------------------------------


@pytest.mark.redis
@SQLITE_ONLY
async def test_an_event_applied_on_one_node_reaches_a_watcher_on_another(
    api: Api, relay_config: RelayConfig
) -> None:
    await require_redis()
    hotel = await cloud_hotel(api)
    shared = relay_config.model_copy(
        update={**LIVE, "bus_backend": BusBackend.REDIS, "redis_url": REDIS_URL}
    )
    node_a = await Relay.open(shared.model_copy(update={"node_id": "node-a"}))
    node_b = await Relay.open(shared.model_copy(update={"node_id": "node-b"}))
    path = f"/v1/hotels/{hotel.hotel_id}/events"
    try:
        async with served(node_b) as base:
            async with stream(base, path, hotel.owner.access_token) as on_b:
                await node_a.live.publish(hotel.hotel_id, [state(1), state(2)])
                seen = events(await on_b.until(lambda m: m.event == "state" and number(m) == 2))
            assert states(seen) == [1, 2]
            # Resumed on node B from the shared stream, with what node A added since.
            await node_a.live.publish(hotel.hotel_id, [state(3)])
            async with stream(
                base, path, hotel.owner.access_token, last_event_id=seen[0].id
            ) as again:
                resumed = await again.until(lambda m: m.event == "state" and number(m) == 3)
            assert states(resumed) == [2, 3]
            assert "gap" not in [m.event for m in resumed]
        # Trimmed past an id: a gap (Redis trims whole nodes of 100 entries, about `keep`).
        org_id = await node_a.live.org_of(hotel.hotel_id)
        assert org_id is not None
        await node_a.live.publish(hotel.hotel_id, [state(n) for n in range(4, 400)])
        resumed_b = await node_b.live.resume(org_id, parse_id(seen[0].id or "") or (0, 0))
        assert resumed_b.gap
        assert 100 <= len(resumed_b.entries) < 396
        newest = resumed_b.entries[-6].key
        tail = await node_b.live.resume(org_id, newest)
        assert (tail.gap, len(tail.entries)) == (False, 5)
    finally:
        await node_a.close()
        await node_b.close()
        client = Redis.from_url(REDIS_URL, socket_timeout=1)
        await client.delete(f"bellhop:live:{await api.relay.live.org_of(hotel.hotel_id)}")
        await client.aclose()


def test_redis_entries_that_are_not_ours_are_skipped() -> None:
    ours = {"h": "h1", "k": "state", "p": "{}"}
    assert redis_entry("1-0", ours) == Entry((1, 0), "h1", None, "state", "{}")
    assert redis_entry("1-0", {"k": "state", "p": "{}"}) is None
    assert redis_entry("nope", ours) is None


@SQLITE_ONLY
async def test_rooms_are_read_once_per_hotel_and_follow_registry_changes(api: Api) -> None:
    hotel = await cloud_hotel(api)
    await api.seed_devices(hotel.hotel_id, 4, rooms=2)  # dev-0000, dev-0002 in r000
    live = api.relay.live
    org_id = await live.org_of(hotel.hotel_id)
    assert org_id is not None
    for n in range(50):
        roomless = LiveEvent("state", {"device_id": f"dev-000{n % 4}", "values": {"n": n}})
        await live.publish(hotel.hotel_id, [roomless])
    assert live.rooms.loads == 1  # one read for fifty publishes
    sub = await live.subscribe(org_id, hotel.hotel_id)
    try:
        # The bridge applied a move of dev-0000: its later events carry the new room.
        moved = LiveEvent("device", {"device_id": "dev-0000"}, room_id="r001")
        later = LiveEvent("state", {"device_id": "dev-0000", "values": {"n": 99}})
        await live.publish(hotel.hotel_id, [moved, later])
        items = []
        while (item := await sub.next(0)) is not None:
            assert not isinstance(item, str), item
            items.append(item)
        last = items[-1]
        assert isinstance(last, Entry)
        assert (last.kind, last.room_id) == ("state", "r001")
    finally:
        live.unsubscribe(sub)


def test_the_sse_library_still_sends_through_the_method_the_stream_overrides() -> None:
    """EventStream times heartbeats only, by overriding a private method of sse-starlette
    (bounded in cloud/pyproject.toml): a release that renames it must fail here."""
    import inspect

    from bellhop_cloud.live.stream import EventStream
    from sse_starlette import EventSourceResponse

    assert list(inspect.signature(EventSourceResponse._send_with_timeout).parameters) == [
        "self",
        "send",
        "message",
    ]
    for sender in (EventSourceResponse._stream_response, EventSourceResponse._ping):
        assert "self._send_with_timeout(" in inspect.getsource(sender)
    assert EventStream._send_with_timeout is not EventSourceResponse._send_with_timeout
