"""bench/sse_fanout.py's clients: raw asyncio connections that each follow one SSE
stream and scan what arrives for each event's `seq` and `sent_ns`, tallying latencies."""

from __future__ import annotations

import asyncio
import time
from array import array
from dataclasses import dataclass, field
from typing import Final, cast

CONNECT_CONCURRENCY: Final = 64  # streams being opened at once
STREAM: Final = "text/event-stream"
SEQ: Final = b'"seq":'
SENT: Final = b',"sent_ns":'
OPEN: Final = b": open\n\n"
END: Final = b"event: end\n"


@dataclass
class Tally:
    """What the clients of one phase received."""

    skip_below: int  # the warm-up's events are not counted
    latencies_ns: array[int] = field(default_factory=lambda: array("q"))  # from the call
    seqs: array[int] = field(default_factory=lambda: array("q"))
    receipts_ns: array[int] = field(default_factory=lambda: array("q"))
    deliveries: int = 0  # counted ones (after the warm-up)
    total: int = 0  # every one
    last_ns: int = 0
    duplicated: int = 0
    gaps: int = 0
    sample: bytes = b""


class Client(asyncio.Protocol):
    """One SSE stream over a raw connection; it only scans for seq and sent_ns."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request, self.tally = request, tally
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = None
        self.buffer = b""
        self.seen = -1  # the last seq received
        self.received = 0
        self.ended: str | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self.buffer + data
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            self.head, buffer = buffer[:end], buffer[end + 4 :]
            if not self.head.startswith(b"HTTP/1.1 200 "):
                self.fail(f"answered {self.head[:200]!r} {buffer[:300]!r}")
                return
        cut = buffer.rfind(b"\n\n")  # whole SSE blocks only (chunk framing lies between)
        if cut < 0:
            self.buffer = buffer
            return
        blocks, self.buffer = buffer[: cut + 2], buffer[cut + 2 :]
        if not self.opened.done() and OPEN in blocks:
            self.opened.set_result(None)
        tally = self.tally
        at = blocks.find(SEQ)
        while at >= 0:
            comma = blocks.find(SENT, at)
            close = blocks.find(b"}", comma)
            seq = int(blocks[at + len(SEQ) : comma])
            sent = int(blocks[comma + len(SENT) : close])
            if seq <= self.seen:
                tally.duplicated += 1
            else:
                if seq != self.seen + 1:
                    tally.gaps += seq - self.seen - 1
                self.seen = seq
                self.received += 1
                tally.total += 1
                tally.last_ns = now
                if seq >= tally.skip_below:
                    tally.latencies_ns.append(now - sent)
                    tally.seqs.append(seq)
                    tally.receipts_ns.append(now)
                    tally.deliveries += 1
            if not tally.sample:
                start = blocks.rfind(b"\n\n", 0, at)
                tally.sample = blocks[0 if start < 0 else start + 2 : close]
            at = blocks.find(SEQ, close)
        if END in blocks:
            self.ended = blocks[blocks.find(END) :][:300].decode(errors="replace")

    def fail(self, why: str) -> None:
        self.ended = why
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(why))
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ended is None:
            self.ended = f"closed ({exc})"
        if not self.opened.done():
            self.opened.set_exception(RuntimeError(self.ended))
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def request_bytes(port: int, path: str, token: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Accept: {STREAM}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def open_clients(
    port: int, path: str, tokens: list[str | None], count: int, tally: Tally
) -> list[Client]:
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(CONNECT_CONCURRENCY)
    clients: list[Client] = []

    async def one(n: int) -> None:
        client = Client(request_bytes(port, path, tokens[n % len(tokens)]), tally)
        clients.append(client)
        async with slots:
            await loop.create_connection(lambda: client, "127.0.0.1", port)
            await asyncio.wait_for(client.opened, 30)

    try:
        await asyncio.gather(*(one(n) for n in range(count)))
    except BaseException:
        close_clients(clients)
        raise
    return clients


def close_clients(clients: list[Client]) -> None:
    for client in clients:
        client.close()
