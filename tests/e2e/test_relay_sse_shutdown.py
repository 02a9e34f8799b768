"""`bellhop cloud run` asked to stop (SIGTERM, SIGINT) while managers follow live events.

Every open stream, of a hotel and of an organisation, is sent `end` with the reason
`shutting_down` as its last block and is then closed cleanly (the answer completed, not
cut), promptly after the signal; the process exits 0 well within its graceful timeout,
with two streams open or with many. The streams are read by two kinds of client: httpx,
and a raw socket that decodes the chunked answer itself (and so sees whether its last
chunk was sent). The signal goes only once every stream has had its `: open` comment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import httpx
import pytest
from bellhop_cloud.server import GRACEFUL_SHUTDOWN_S

from tests.support.relay_process import RelayProcess, Tenant, bytecode_cache
from tests.support.waiting import until

pytestmark = pytest.mark.timeout(180)

# From the signal to every stream's `end`: the relay learns of the stop within half a
# second and wakes its streams at once; the rest is a loaded machine's margin.
END_WITHIN_S: Final = 5.0
# From the signal to the exit, with every stream read: well within the graceful timeout.
EXIT_WITHIN_S: Final = GRACEFUL_SHUTDOWN_S / 2
MANY: Final = 200  # streams in the many-streams test, half of each route and each client
OPEN_WITHIN_S: Final = 60.0  # every stream subscribed (a busy machine opens 200 slowly)


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


@dataclass
class Block:
    """One SSE block: an event, or comments only."""

    event: str | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads("\n".join(self.data))


class Blocks:
    """SSE text, fed in any pieces, cut into blocks (the relay separates lines with LF)."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self._text = ""
        self.ended_at: float | None = None  # when the `end` event arrived (monotonic)

    def feed(self, text: str) -> None:
        self._text += text
        while "\n\n" in self._text:
            raw, self._text = self._text.split("\n\n", 1)
            block = Block()
            for line in raw.split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    block.comments.append(value)
                elif name == "event":
                    block.event = value
                elif name == "data":
                    block.data.append(value)
            self.blocks.append(block)
            if block.event == "end" and self.ended_at is None:
                self.ended_at = time.monotonic()

    @property
    def opened(self) -> bool:
        return any(b.comments == ["open"] for b in self.blocks)

    def events(self) -> list[Block]:
        return [b for b in self.blocks if b.event is not None]


class Watcher(Protocol):
    """A client following one stream until the relay closes it."""

    seen: Blocks
    completed: bool  # the answer was completed (its last chunk), not cut

    async def follow(self) -> None: ...


class HttpxWatcher:
    """httpx, as the SDK reads the relay: an incomplete answer raises."""

    def __init__(self, http: httpx.AsyncClient, path: str, token: str) -> None:
        self.http, self.path, self.token = http, path, token
        self.seen = Blocks()
        self.completed = False

    async def follow(self) -> None:
        headers = {"Authorization": self.token, "Accept": "text/event-stream"}
        async with self.http.stream("GET", self.path, headers=headers) as answer:
            assert answer.status_code == 200, await answer.aread()
            try:
                async for text in answer.aiter_text():
                    self.seen.feed(text)
            except httpx.RemoteProtocolError:
                return  # cut: `completed` stays False
        self.completed = True


class RawWatcher:
    """HTTP/1.1 over a bare socket, the chunked answer decoded here."""

    def __init__(self, port: int, path: str, token: str) -> None:
        self.port, self.path, self.token = port, path, token
        self.seen = Blocks()
        self.completed = False

    async def follow(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            request = (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: {self.token}\r\nAccept: text/event-stream\r\n\r\n"
            )
            writer.write(request.encode())
            head = (await reader.readuntil(b"\r\n\r\n")).decode().lower()
            assert head.startswith("http/1.1 200"), head
            assert "transfer-encoding: chunked" in head, head
            while True:
                size_line = await reader.readline()
                if not size_line:
                    return  # closed between chunks, before the last one: cut
                size = int(size_line.strip() or b"0", 16)
                chunk = await reader.readexactly(size + 2)
                if size == 0:
                    self.completed = True
                    return
                self.seen.feed(chunk[:-2].decode())
        except asyncio.IncompleteReadError:
            return  # closed mid-chunk: cut
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def following(watchers: list[Watcher]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Each watcher following its stream in a task of its own, all of them subscribed."""
    tasks = [asyncio.create_task(w.follow()) for w in watchers]
    try:

        def all_open() -> bool:
            for task in tasks:
                if task.done():
                    task.result()  # a stream that failed to open says why
                    raise AssertionError("a stream closed before the relay was stopped")
            return all(w.seen.opened for w in watchers)

        await until(all_open, OPEN_WITHIN_S, "every stream subscribed", every=0.05)
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def routes(tenant: Tenant) -> tuple[str, str]:
    return f"/v1/hotels/{tenant.hotel_id}/events", f"/v1/orgs/{tenant.org_id}/events"


async def stop_and_follow(
    relay: RelayProcess, sig: signal.Signals, watchers: list[Watcher], tasks: list[Any]
) -> tuple[float, int]:
    """Send `sig`; every stream read to its close and the process gone: (seconds, status)."""
    proc = relay.proc
    assert proc is not None
    signalled = time.monotonic()
    proc.send_signal(sig)
    # The reads go on while the process stops; no blocking wait holds this loop.
    await asyncio.wait_for(asyncio.gather(*tasks), EXIT_WITHIN_S + END_WITHIN_S)
    await until(lambda: proc.poll() is not None, EXIT_WITHIN_S + END_WITHIN_S, "the relay gone")
    took = time.monotonic() - signalled
    for w in watchers:
        events = w.seen.events()
        assert events, f"nothing but comments before the close: {w.seen.blocks}"
        last = events[-1]
        assert last.event == "end", w.seen.blocks
        body = last.json()
        assert (body["kind"], body["reason"]) == ("end", "shutting_down"), body
        assert body["at"].endswith("Z")
        assert w.seen.blocks[-1] is last, "the `end` is the stream's last block"
        assert w.completed, "the stream was closed cleanly after its `end`, not cut"
        assert w.seen.ended_at is not None
        assert w.seen.ended_at - signalled < END_WITHIN_S, w.seen.ended_at - signalled
    return took, proc.returncode


def assert_clean_log(relay: RelayProcess) -> None:
    """uvicorn neither waited out its graceful timeout nor cut an unfinished answer."""
    tail = relay.tail(20_000)
    assert relay.logged("timeout graceful shutdown exceeded") == 0, tail
    assert relay.logged("ASGI callable returned without completing response") == 0, tail
    assert relay.logged("Traceback") == 0, tail


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
async def test_a_stopping_relay_ends_each_stream_with_shutting_down_and_exits(
    tmp_path: Path, sig: signal.Signals
) -> None:
    relay = RelayProcess(tmp_path / "relay")
    relay.start()
    try:
        tenant = relay.tenant()
        token = tenant.headers["Authorization"]
        hotel_path, org_path = routes(tenant)
        async with httpx.AsyncClient(base_url=relay.url, timeout=30, trust_env=False) as http:
            watchers: list[Watcher] = [
                HttpxWatcher(http, hotel_path, token),
                RawWatcher(relay.port, org_path, token),
            ]
            async with following(watchers) as tasks:
                took, status = await stop_and_follow(relay, sig, watchers, tasks)
        assert status == 0, relay.tail()
        assert took < EXIT_WITHIN_S, f"stopping took {took:.2f} s"
        assert_clean_log(relay)
    finally:
        relay.close()


async def test_a_relay_with_many_streams_ends_them_all_and_exits_promptly(
    tmp_path: Path,
) -> None:
    # One session's streams: more than a session may hold by default (100 per node).
    relay = RelayProcess(tmp_path / "relay", settings={"events_streams_per_session": MANY})
    relay.start()
    try:
        tenant = relay.tenant()
        token = tenant.headers["Authorization"]
        hotel_path, org_path = routes(tenant)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(
            base_url=relay.url, timeout=60, trust_env=False, limits=limits
        ) as http:
            watchers: list[Watcher] = []
            for n in range(MANY // 2):
                path = hotel_path if n % 2 else org_path
                watchers.append(HttpxWatcher(http, path, token))
                watchers.append(RawWatcher(relay.port, org_path if n % 2 else hotel_path, token))
            async with following(watchers) as tasks:
                took, status = await stop_and_follow(relay, signal.SIGTERM, watchers, tasks)
        assert status == 0, relay.tail()
        assert took < EXIT_WITHIN_S, f"stopping with {MANY} streams took {took:.2f} s"
        assert_clean_log(relay)
    finally:
        relay.close()
