"""A relay for the edge's bridge tests: real WebSockets, the real protocol core.

It speaks `bellhop_bridge.RelayConnection` over `websockets`, checks the
gateway's proof with its public key, applies events with `Dedup` into
memory and acknowledges them, and can misbehave on demand: refuse the
gateway, hold back acks, go silent with the socket open (a half-open link).
The cloud relay's own endpoint is tested against the real gateway elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import (
    LANES,
    BatchReceived,
    CloseCode,
    Closed,
    Dedup,
    HeartbeatReceived,
    HelloReceived,
    ProofReceived,
    RelayConnection,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


@dataclass
class RelayDouble:
    public_key: Ed25519PublicKey
    heartbeat_s: float = 15.0
    window_events: int = 2000
    window_bytes: int = 16 << 20
    refuse: CloseCode | None = None  # close every handshake with this code
    ack: bool = True  # acknowledge what was applied
    apply: bool = True  # False: take batches and forget them (a relay that dies before commit)
    port: int = 0
    connections: int = 0
    applied: list[bridge_pb2.OutboxEvent] = field(default_factory=list)
    arrivals: list[tuple[int, int]] = field(default_factory=list)  # (lane, seq) as received
    heartbeats: list[HeartbeatReceived] = field(default_factory=list)
    closes: list[Closed] = field(default_factory=list)
    dedup: Dedup = field(default_factory=lambda: Dedup(dict.fromkeys(LANES, 0)))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _open: set[int] = field(default_factory=set)
    _stalled: set[int] = field(default_factory=set)

    def stall(self) -> None:
        """The connections open now go silent, sockets held open (a half-open link)."""
        self._stalled |= self._open

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[RelayDouble]:
        async with serve(self._handler, "127.0.0.1", self.port, compression=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            yield self

    def of_kind(self, kind: str) -> list[bridge_pb2.OutboxEvent]:
        return [e for e in self.applied if e.WhichOneof("payload") == kind]

    async def wait(self, predicate: object, timeout: float = 15.0) -> None:
        """Until `predicate()` holds: woken by the relay's events, re-checked every 10 ms
        for what happens on the gateway's side."""
        assert callable(predicate)
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.01):
                        await self.changed.wait()

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        self._open.add(number)
        loop = asyncio.get_running_loop()
        conn = RelayConnection(
            now=loop.time(),
            nonce=os.urandom(32),
            window_events=self.window_events,
            window_bytes=self.window_bytes,
            heartbeat_interval_s=self.heartbeat_s,
        )
        try:
            while not conn.closed:
                if number in self._stalled:
                    # Say nothing and take nothing from the gateway until it hangs up.
                    await ws.wait_closed()
                    return
                try:
                    async with asyncio.timeout_at(conn.next_deadline()):
                        data = await ws.recv()
                except TimeoutError:
                    conn.tick(loop.time())
                except ConnectionClosed:
                    conn.connection_lost("closed")
                else:
                    assert isinstance(data, bytes)
                    conn.receive_data(data, loop.time())
                for event in conn.events_received():
                    self._handle(conn, event, loop.time())
                for out in conn.data_to_send():
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(out)
        finally:
            self._open.discard(number)
            self.changed.set()

    def _handle(self, conn: RelayConnection, event: object, now: float) -> None:
        if isinstance(event, HelloReceived):
            if self.refuse is not None:
                conn.close(self.refuse, "refused by the test")
            else:
                conn.challenge(now)
        elif isinstance(event, ProofReceived):
            try:
                self.public_key.verify(event.signature, event.message)
            except InvalidSignature:
                conn.close(CloseCode.BAD_PROOF, "bad signature")
                return
            conn.welcome(self.dedup.last_applied, now)
        elif isinstance(event, BatchReceived):
            self.arrivals.extend((e.lane, e.seq) for e in event.events)
            if not self.apply:
                return
            self.applied.extend(self.dedup.fresh(event.events))
            if self.ack:
                for lane in LANES:
                    received = [e.seq for e in event.events if e.lane == lane]
                    if received:
                        conn.ack(lane, max(received), now)
        elif isinstance(event, HeartbeatReceived):
            self.heartbeats.append(event)
        elif isinstance(event, Closed):
            self.closes.append(event)
        self.changed.set()
