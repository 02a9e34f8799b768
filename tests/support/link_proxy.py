"""A TCP proxy in front of a relay's bridge port that a test can break, or point elsewhere:
gateways are told at enrolment to dial it."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from typing import Any

__all__ = ["LinkMode", "LinkProxy"]


class LinkMode(enum.Enum):
    FORWARD = "forward"
    REFUSE = "refuse"  # the relay is unreachable: connections close at once
    BLACKHOLE = "blackhole"  # everything is lost and nothing is closed: a half-open link


class _Pair:
    def __init__(self, silent: bool) -> None:
        self.silent = silent
        self.writers: list[asyncio.StreamWriter] = []

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class LinkProxy:
    """A TCP proxy in front of the relay's bridge port; gateways are told to dial it."""

    def __init__(self) -> None:
        self.target_port = 0
        self.mode = LinkMode.FORWARD
        self._server: asyncio.Server | None = None
        self._pairs: list[_Pair] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/bridge"

    def refuse(self) -> None:
        """Cut every link, and refuse new ones, as if the relay had gone."""
        self.mode = LinkMode.REFUSE
        for pair in self._pairs:
            pair.close()

    def blackhole(self) -> None:
        """Every link, live or new, loses everything from now on; no socket closes."""
        self.mode = LinkMode.BLACKHOLE
        for pair in self._pairs:
            pair.silent = True

    def restore(self) -> None:
        """New connections are forwarded again (dead ones stay dead, as on a real network)."""
        self.mode = LinkMode.FORWARD

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in self._pairs:
            pair.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        pair = _Pair(silent=self.mode is LinkMode.BLACKHOLE)
        pair.writers.append(writer)
        try:
            if self.mode is LinkMode.REFUSE:
                return
            if self.mode is LinkMode.BLACKHOLE:
                # A dead network: the connection opens (a middlebox answers) and
                # nothing ever reaches the relay, nor is acknowledged: nothing is read,
                # so the sender's buffers fill as they would.
                self._pairs.append(pair)
                await asyncio.Event().wait()
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), 5
            )
            pair.writers.append(up_writer)
            self._pairs.append(pair)
            await asyncio.gather(
                self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair)
            )
        except (OSError, TimeoutError):
            pass
        finally:
            if not pair.silent:
                pair.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, pair: _Pair) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                if pair.silent:
                    # Dropped, and nothing read from now on: the sender never learns,
                    # and its socket stops draining as on a path that lost its packets.
                    await asyncio.Event().wait()
                dst.write(data)
                await dst.drain()
        if not pair.silent:
            pair.close()  # an end closed: pass it on, as TCP would
