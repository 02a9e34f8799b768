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
import json
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Self

from tests.support.loopback import LoopbackReceiver, close_writer

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
class WebhookReceiver(LoopbackReceiver[Received]):
    what = "webhook requests"
    status: int = 200
    _held: asyncio.Event = field(default_factory=asyncio.Event)
    _holding: bool = False

    @property
    def requests(self) -> list[Received]:
        return self.received

    async def __aenter__(self) -> Self:
        self._held.set()
        return await super().__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
        await super().__aexit__(kind, exc, tb)

    def apprise_url(self, path: str = "/hook") -> str:
        return f"json://127.0.0.1:{self.port}{path}"

    def hold(self) -> None:
        """Leave each request that arrives from now on unanswered until `release()`."""
        self._holding = True
        self._held.clear()

    def release(self) -> None:
        self._holding = False
        self._held.set()

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
            await self._record(Received(path, headers, body))
            if self._holding:
                await self._held.wait()
            reply = f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            writer.write(reply.encode())
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError):
            pass  # a client that went away (a killed relay) or a request that is not one
        finally:
            await close_writer(writer)
