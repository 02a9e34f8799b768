"""Probing the SDK: a server whose answers are not what its API promises, and a caller
whose ids would change the REST URL they are put in."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from bellhop_sdk import BellhopClient, BellhopError, InvalidRequest, ServerError
from bellhop_sdk.auth import StaticToken
from bellhop_sdk.cloud_events import event_from_json
from bellhop_sdk.errors import MALFORMED
from hypothesis import given, settings
from hypothesis import strategies as st


@contextlib.asynccontextmanager
async def answering(body: bytes) -> AsyncIterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server answering every request 200 with `body`; the request
    lines it got."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head.split(b"\r\n", 1)[0])
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
            )
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen
    finally:
        server.close()


def client(url: str) -> BellhopClient:
    return BellhopClient(cloud_url=url, credentials=StaticToken("t"), trust_env=False)


CALLS: list[tuple[str, Callable[[BellhopClient], Awaitable[Any]]]] = [
    ("hotels", lambda c: c.hotels()),
    ("devices", lambda c: c.devices("h1")),
    ("device", lambda c: c.device("h1", "d1")),
    ("alerts", lambda c: c.alerts("h1")),
    ("command", lambda c: c.get_command("h1", "c1")),
]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"null",
        b"[]",
        b'{"items": 5}',
        b'[{"id": 1}]',
        b'{"id": "x", "device_id": 7, "raised_at": "yesterday"}',
        b'[{"id":"h","org_id":"o","name":"n","timezone":"UTC","created_at":"garbage"}]',
    ],
)
async def test_an_answer_that_does_not_parse_is_a_typed_error(body: bytes) -> None:
    async with answering(body) as (url, _), client(url) as c:
        for name, call in CALLS:
            outcome: BaseException | None = None
            try:
                await call(c)
            except Exception as exc:
                outcome = exc
            if outcome is None:
                continue  # some of these bodies are valid answers to some calls
            assert isinstance(outcome, BellhopError), (name, type(outcome).__name__, outcome)
            if isinstance(outcome, ServerError):
                assert outcome.code == "bad_answer", name
                assert body.decode() not in str(outcome)  # the kind of fault, not the answer


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("h1", "../../orgs/o1"), "device_id"),
        (("h1/devices", "d1"), "hotel_id"),
        (("h1", "d1?x=1"), "device_id"),
        (("h1", "d1#x"), "device_id"),
        (("h1", "d%2F1"), "device_id"),
        (("h1", ".."), "device_id"),
        (("h1", "d\x00"), "device_id"),
        (("h1", "d\u202e"), "device_id"),
        (("h1", "d 1"), "device_id"),
        (("h1", ""), "device_id"),
        (("h1", "d" * 201), "device_id"),
    ],
)
async def test_an_id_that_would_change_the_url_is_refused_before_sending(
    args: tuple[str, str], field: str
) -> None:
    async with answering(b"{}") as (url, seen), client(url) as c:
        with pytest.raises(InvalidRequest) as caught:
            await c.device(*args)
        assert caught.value.message.startswith(f"{field}: ")
        with pytest.raises(InvalidRequest):
            await c.send_command(*args, "set_light", {"on": True})
        with pytest.raises(InvalidRequest):
            c.events(args[0], room_id=args[1])
    assert seen == []


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
EVENT = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["state", "alert", "command", "desired", "device", "gateway"]),
        "hotel_id": st.text(max_size=5) | st.integers(),
        "at": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", 5, None]),
    },
    optional={"data": st.dictionaries(st.text(max_size=12), JSON) | JSON, "room_id": JSON},
)


@settings(max_examples=300, deadline=None)
@given(EVENT)
def test_an_arbitrary_event_parses_or_fails_with_what_the_client_turns_into_bad_answer(
    body: dict[str, Any],
) -> None:
    with contextlib.suppress(*MALFORMED):
        event_from_json(body, None)


@settings(max_examples=100, deadline=None)
@given(JSON)
def test_any_json_at_all_is_no_worse(body: Any) -> None:
    with contextlib.suppress(*MALFORMED):
        event_from_json(body, "1")
    json.dumps(body)
