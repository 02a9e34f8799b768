"""The cloud transport reads answers and events within bounds: a relay (or anything in
front of it) that sends a body without end, a compressed body that expands without end,
or an event stream whose line never ends, gets `ServerError` `answer_too_large` and its
connection closed, rather than the caller's memory growing. Against a loopback HTTP
server that sends exactly that."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pytest
from bellhop_sdk import BellhopClient, ServerError
from bellhop_sdk.auth import StaticToken
from bellhop_sdk.cloud import CloudTransport
from bellhop_sdk.cloud_read import MAX_ANSWER_BYTES, MAX_EVENT_BYTES

MIB: Final = 1024 * 1024
# A hostile server stops sending after this much (and holds the connection open), so a
# reader without bounds waits rather than filling this machine's memory.
SENDS_AT_MOST: Final = 64 * MIB
WAIT_S: Final = 20.0


@dataclass
class Hostile:
    url: str
    sent: list[int] = field(default_factory=list)  # bytes of body sent, per connection
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # the client hung up


Body = Callable[[asyncio.StreamWriter], Awaitable[int]]


@contextlib.asynccontextmanager
async def hostile(head: bytes, body: Body) -> AsyncIterator[Hostile]:
    """A loopback HTTP server answering every request with `head` and then `body`; it
    notes when the client closes the connection."""
    server_state: list[Hostile] = []
    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state = server_state[0]
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            with contextlib.suppress(Exception):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(head)
                state.sent.append(await body(writer))
                await reader.read()  # until the client closes its end
            state.closed.set()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    server_state.append(Hostile(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"))
    try:
        yield server_state[0]
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


def endless(piece: bytes, *, start: bytes = b"") -> Body:
    async def send(writer: asyncio.StreamWriter) -> int:
        writer.write(start)
        sent = len(start)
        while sent < SENDS_AT_MOST:
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        return sent

    return send


def once(data: bytes) -> Body:
    async def send(writer: asyncio.StreamWriter) -> int:
        writer.write(data)
        await writer.drain()
        return len(data)

    return send


JSON_HEAD: Final = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
SSE_HEAD: Final = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"


async def too_large(call: Awaitable[Any]) -> ServerError:
    with pytest.raises(ServerError) as caught:
        async with asyncio.timeout(WAIT_S):
            await call
    assert caught.value.code == "answer_too_large"
    return caught.value


async def hung_up(server: Hostile) -> None:
    async with asyncio.timeout(WAIT_S):
        await server.closed.wait()


@pytest.mark.parametrize(
    ("head", "body"),
    [
        # Declared and larger than the bound: refused before the body is read.
        (JSON_HEAD + b"Content-Length: %d\r\n\r\n" % (SENDS_AT_MOST,), endless(b" " * 65536)),
        # Chunked, without end.
        (JSON_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
         endless(b"10000\r\n" + b" " * 65536 + b"\r\n")),
        # Without a length, until the connection closes.
        (JSON_HEAD + b"Connection: close\r\n\r\n", endless(b" " * 65536, start=b"[")),
    ],
    ids=["declared", "chunked", "unframed"],
)  # fmt: skip
async def test_a_body_past_the_bound_is_given_up(head: bytes, body: Body) -> None:
    async with (
        hostile(head, body) as server,
        BellhopClient(cloud_url=server.url, credentials=StaticToken("t"), trust_env=False) as c,
    ):
        error = await too_large(c.hotels())
        await hung_up(server)
    assert str(MAX_ANSWER_BYTES) in error.message
    assert sum(server.sent) < SENDS_AT_MOST  # it stopped reading, and closed


async def test_a_compressed_body_that_expands_past_the_bound_is_given_up() -> None:
    bomb = gzip.compress(b" " * (MAX_ANSWER_BYTES + MIB))  # about 9 KiB on the wire
    head = JSON_HEAD + b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    async with (
        hostile(head, once(bomb)) as server,
        BellhopClient(cloud_url=server.url, credentials=StaticToken("t"), trust_env=False) as c,
    ):
        await too_large(c.hotels())
        await hung_up(server)


async def test_the_bound_is_the_transports_setting() -> None:
    head = JSON_HEAD + b"Content-Length: 4096\r\n\r\n"
    async with hostile(head, once(b"[" + b" " * 4094 + b"]")) as server:
        small = CloudTransport(server.url, StaticToken("t"), trust_env=False, max_answer_bytes=1024)
        try:
            await too_large(small.list_hotels())
        finally:
            await small.aclose()
        roomy = CloudTransport(server.url, StaticToken("t"), trust_env=False)
        try:
            assert await roomy.list_hotels() == []  # the same answer within the default
        finally:
            await roomy.aclose()


async def first_item(transport: CloudTransport) -> Any:
    stream = transport.events("h1")
    try:
        return await anext(stream)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        endless(b"x" * 65536, start=b"data: "),  # one line that never ends
        endless(b"data: " + b"x" * 1000 + b"\n", start=b"id: 1\n"),  # one event without end
        endless(b"y" * 65536, start=b": a comment "),  # a comment that never ends
    ],
    ids=["line", "event", "comment"],
)
async def test_an_event_stream_past_the_bound_is_given_up(body: Body) -> None:
    async with hostile(SSE_HEAD, body) as server:
        transport = CloudTransport(server.url, StaticToken("t"), trust_env=False)
        try:
            error = await too_large(first_item(transport))
            await hung_up(server)
        finally:
            await transport.aclose()
    assert str(MAX_EVENT_BYTES) in error.message
    assert sum(server.sent) < SENDS_AT_MOST


async def test_events_within_the_bound_arrive_whatever_their_line_ends() -> None:
    data = (
        b'{"kind":"gateway","hotel_id":"h1","room_id":null,"at":"2020-01-01T00:00:00Z",'
        b'"data":{"connected":true}}'
    )
    # CR LF, a lone CR and LF line ends; a comment; the data split over two lines' worth.
    stream = b": hello\r\nid: 7\rdata: " + data + b"\n\n"
    async with hostile(SSE_HEAD, once(stream)) as server:
        transport = CloudTransport(server.url, StaticToken("t"), trust_env=False)
        try:
            async with asyncio.timeout(WAIT_S):
                event = await first_item(transport)
        finally:
            await transport.aclose()
    assert event.kind == "gateway"
    assert event.event_id == "7"
