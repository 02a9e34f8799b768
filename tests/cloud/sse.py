"""Server-Sent Events against the relay: the app under uvicorn in the test's own loop,
and a reader of its streams (httpx's ASGI transport cannot stream an endless answer)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from bellhop_cloud.app import create_app
from bellhop_cloud.relay import Relay

from tests.cloud.bridging import until
from tests.cloud.serving import free_port

STREAM = "text/event-stream"


@contextlib.asynccontextmanager
async def served(relay: Relay) -> AsyncIterator[str]:
    """The relay's REST API under uvicorn on a free loopback port; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(relay.config, relay=relay),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await until(lambda: server.started or task.done())
        if not server.started:
            await task
            raise RuntimeError("the relay did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class Message:
    """One dispatched block of a stream: an event, or comments only."""

    event: str | None = None
    id: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads("\n".join(self.data))


class Stream:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()

    async def next(self, timeout: float = 10.0) -> Message | None:
        """The next block, or None when the relay ended the stream."""
        message = Message()
        async with asyncio.timeout(timeout):
            while True:
                try:
                    line = await anext(self._lines)
                except StopAsyncIteration:
                    return None
                if line == "":
                    if message.event or message.data or message.comments or message.id:
                        return message
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    message.comments.append(value)
                elif name == "event":
                    message.event = value
                elif name == "id":
                    message.id = value
                elif name == "data":
                    message.data.append(value)

    async def until(self, done: Callable[[Message], bool], timeout: float = 10.0) -> list[Message]:
        """Every block up to and including the first that is `done`."""
        seen: list[Message] = []
        async with asyncio.timeout(timeout):
            while True:
                message = await self.next(timeout)
                assert message is not None, f"the stream ended after {seen}"
                seen.append(message)
                if done(message):
                    return seen

    async def rest(self, timeout: float = 10.0) -> list[Message]:
        """Every block until the relay ends the stream."""
        seen: list[Message] = []
        async with asyncio.timeout(timeout):
            while (message := await self.next(timeout)) is not None:
                seen.append(message)
        return seen


def events(messages: list[Message]) -> list[Message]:
    """The events among `messages` (comments left out)."""
    return [m for m in messages if m.event is not None]


@contextlib.asynccontextmanager
async def stream(
    base: str, path: str, token: str, *, last_event_id: str | None = None
) -> AsyncIterator[Stream]:
    """An open stream (its `open` comment read: the relay is subscribed)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": STREAM}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    timeout = httpx.Timeout(10.0, read=30.0)
    async with (
        httpx.AsyncClient(base_url=base, timeout=timeout) as http,
        http.stream("GET", path, headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith(STREAM)
        opened = Stream(response)
        first = await opened.next()
        assert first is not None
        assert first.comments == ["open"], first
        yield opened


def answered(relay: Relay, route: str) -> float:
    """GET requests of `route` the relay has finished answering with a 200."""
    found = relay.metrics.registry.get_sample_value(
        "bellhop_cloud_http_requests_total", {"method": "GET", "route": route, "status": "200"}
    )
    return found or 0.0


async def drain(response: httpx.Response) -> bytes | None:
    """The answer's last bytes, or None when the relay cut it."""
    tail = b""
    try:
        async for chunk in response.aiter_bytes():
            tail = (tail + chunk)[-500:]
    except httpx.HTTPError:
        return None
    return tail
