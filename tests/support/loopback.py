"""What the notification tests' receivers (smtp.py, webhook.py) share: a server on a
free loopback port, and waiting until enough has arrived.

    @dataclass
    class EchoReceiver(LoopbackReceiver[bytes]):
        what = "lines"

        async def _serve(self, reader, writer) -> None:
            await self._record(await reader.readline())
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Generic, Self, TypeVar

__all__ = ["LoopbackReceiver", "close_writer"]

T = TypeVar("T")


@dataclass
class LoopbackReceiver(Generic[T]):
    """A server a subclass's `_serve` answers; `_record` keeps what each connection
    brought, in `received`, and wakes `wait_for`."""

    what: ClassVar[str] = "items"  # what arrives, as `wait_for`'s failure counts it
    received: list[T] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[T]:
        """Until at least `count` arrived; AssertionError after `timeout` s."""
        deadline = time.monotonic() + timeout
        async with self._arrived:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} {self.what}: {len(self.received)} came")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), left)
        return list(self.received)

    async def _record(self, item: T) -> None:
        async with self._arrived:
            self.received.append(item)
            self._arrived.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection whose peer may be gone already."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
