"""A local HTTP webhook receiver for the notification tests, on a free loopback port.

    async with WebhookReceiver() as hook:        # every request answered 200 at once
        url = hook.apprise_url("/front-desk")    # json://127.0.0.1:PORT/front-desk
        await hook.wait_for(1)                   # until one request has arrived
        hook.requests                            # each one's path, headers and JSON body

`hold()` keeps each next request open, unanswered, until `release()`: what a relay
killed mid-send leaves behind. A request counts as received once its body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

__all__ = ["Received", "WebhookReceiver"]

READ_TIMEOUT_S: Final = 10.0
MAX_BODY: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def key(self) -> str | None:
        return self.headers.get("x-bellhop-notification")


@dataclass
class WebhookReceiver:
    status: int = 200
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _held: asyncio.Event = field(default_factory=asyncio.Event)
    _holding: bool = False
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __aenter__(self) -> WebhookReceiver:
        self._held.set()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    def apprise_url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def hold(self) -> None:
        """Leave each request that arrives from now on unanswered until `release()`."""
        self._holding = True
        self._held.clear()

    def release(self) -> None:
        self._holding = False
        self._held.set()

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        """Until at least `count` requests arrived; AssertionError after `timeout` s."""
        deadline = time.monotonic() + timeout
        async with self._arrived:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} webhook requests: {len(self.requests)} came")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
        return list(self.requests)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                size = min(int(headers.get("content-length", "0")), MAX_BODY)
                raw = await reader.readexactly(size)
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            async with self._arrived:
                self.requests.append(Received(path, headers, body))
                self._arrived.notify_all()
            if self._holding:
                await self._held.wait()
            reply = f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(reply.encode())
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError):
            pass  # a client that went away (a killed relay) or a request that is not one
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
