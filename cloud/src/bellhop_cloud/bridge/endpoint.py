"""The relay's bridge endpoint: a thin asyncio driver over `bellhop_bridge.RelayConnection`.

    endpoint = BridgeEndpoint(relay)
    async with endpoint.serving(host, port):    # websockets' own server
        ...

Per connection: the gateway's Hello is checked against its enrolment (known,
not revoked, this hotel), its proof against the public key it enrolled
with; then batches are applied in one transaction each with the lanes' new
positions (so each event once) and acknowledged after the commit, in the order read, by
a task of the connection's own beside its reader (batches.py). A second
connection of the same gateway replaces the first. A revoked gateway is cut
off within `bridge_revocation_check_s`, with a fatal close so that it stops
retrying. Why websockets' own server: docs/bridge.md, "Where the relay serves bridges".

Under a reconnect storm, handshakes take turns (admission.py), identities are looked up
in batches (identities.py) and link rows written in group commits (links.py); on the way
out every connection is closed within CLOSE_ALL_S. Frames to the gateway (commands,
acknowledgements, desired state) come from the downlink (downlink.py) of this node.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import (
    BatchReceived,
    CloseCode,
    Closed,
    CommandResultReceived,
    Event,
    HeartbeatReceived,
    HelloReceived,
    ProofReceived,
    RelayConnection,
    SnapshotReceived,
)
from bellhop_bridge.connection import State
from bellhop_bridge.frames import MAX_FRAME_BYTES, NONCE_BYTES
from sqlalchemy.exc import SQLAlchemyError
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode as CloseStatus
from websockets.http11 import Request, Response
from websockets.protocol import State as SocketState

from bellhop_cloud.bridge import revocations, trust
from bellhop_cloud.bridge.admission import Admission
from bellhop_cloud.bridge.batches import HEARD_EVERY_S, Applier, Batches
from bellhop_cloud.bridge.identities import Identities
from bellhop_cloud.bridge.links import Links
from bellhop_cloud.bridge.resync import Resyncs
from bellhop_cloud.bridge.session import Link, who
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.live.events import gateway_event
from bellhop_cloud.relay import Relay

__all__ = ["BRIDGE_PATH", "BridgeEndpoint"]

BRIDGE_PATH: Final = "/v1/bridge"

log = logging.getLogger(__name__)
# websockets' own lines (a connection opened, closed) are per connection: thousands
# in a reconnect storm, and the endpoint logs what matters of each. Its errors stay.
_ws_log = logging.getLogger(f"{__name__}.websockets")
_ws_log.setLevel(logging.WARNING)

# Handshakes worked on at once; the others wait their turn (docs/bridge.md).
HANDSHAKES: Final = 100
# Connections the kernel holds for the relay to accept (a SYN past it is dropped and sent
# again a second later); capped by net.core.somaxconn: raise it (docs/bridge.md).
BACKLOG: Final = 16384
# On the way out, every bridge is told and closed within this; sockets still
# open then are dropped.
CLOSE_ALL_S: Final = 5.0
# A bridge closed by the relay (replaced, revoked) gets this long to take its
# Error frame and close before its socket is dropped.
CLOSE_ONE_S: Final = 5.0


class BridgeEndpoint:
    def __init__(
        self,
        relay: Relay,
        config: RelayConfig | None = None,
        *,
        handshakes: int = HANDSHAKES,
        close_within_s: float = CLOSE_ALL_S,
    ) -> None:
        self.relay = relay
        self._config = config or relay.config
        self.close_within_s = close_within_s
        self._live: dict[str, Link] = {}  # open bridges, by gateway
        self._hotels: dict[str, Link] = {}  # the latest open bridge of each hotel
        self._conns: set[Link] = set()  # every connection, in its handshake or open
        self._closing: set[asyncio.Task[None]] = set()
        self.admission = Admission(handshakes)
        self.links = Links(relay.store)
        self.identities = Identities(relay.store)
        self.resyncs = Resyncs(relay.store)  # gateways to ask for a snapshot (a restore)
        self.applier = Applier(relay, self.resyncs)
        self.closes: dict[str, int] = {}
        relay.downlink.attach(self._send_down, self._hotels.keys)

    @contextlib.asynccontextmanager
    async def serving(self, host: str, port: int) -> AsyncIterator[Server]:
        await self.resyncs.load()
        # The link rows are written until every connection's end is known.
        async with (
            self.links.running(),
            serve(
                self.handle,
                host,
                port,
                max_size=MAX_FRAME_BYTES,
                # Frames buffered per connection before the socket stops being read:
                # bounds what one peer can make the relay hold (4 x 1 MiB).
                max_queue=4,
                compression=None,  # memory per idle bridge, and the frames are protobuf
                ping_interval=None,  # the protocol's own heartbeats find dead links
                open_timeout=self._config.bridge_handshake_timeout_s,
                close_timeout=CLOSE_ONE_S,
                server_header=None,
                process_request=self._route,
                logger=_ws_log,
                backlog=BACKLOG,
            ) as server,
        ):
            watch = revocations.watch(
                self.relay.store,
                self._config.bridge_revocation_check_s,
                live=lambda: list(self._live),
                cut=self._cut,
            )
            watcher = asyncio.create_task(watch, name="bridge-revocations")
            try:
                yield server
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
                # No new connections to a node on its way out: gateways wait for the next.
                server.server.close()
                await self.close_all(CloseCode.SHUTTING_DOWN, "the relay is restarting")

    async def close_all(self, code: CloseCode, message: str) -> None:
        """Close every connection on this node, telling each gateway why; all at once, and
        within `close_within_s`, past which the sockets still open are dropped."""
        self.admission.close()  # handshakes waiting their turn end too
        links = list(self._conns)
        began = time.monotonic()
        for link in links:
            link.conn.close(code, message)
        dropped = 0
        try:
            async with asyncio.timeout(self.close_within_s):
                await asyncio.gather(*(self._leave(link) for link in links))
        except TimeoutError:
            for link in links:
                if link.ws.state is not SocketState.CLOSED:
                    dropped += 1
                    link.ws.transport.abort()
        if links:
            log.info(
                "bridge: %d connections closed (%s) in %.1f s, %d of them dropped",
                len(links),
                code.value,
                time.monotonic() - began,
                dropped,
            )
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def _say_goodbye(self, link: Link) -> None:
        """Send what the closed connection has left to say (its Error frame), then close."""
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await self._flush(link)
            await link.ws.close()

    async def _leave(self, link: Link) -> None:
        """On the way out: the Error frame, then the socket closes once it is written,
        without waiting for each gateway's close frame (10,000 close handshakes with
        gateways busy reconnecting took longer than the relay's CPU for them)."""
        with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
            await self._flush(link)
        link.ws.transport.close()

    def _end(self, link: Link, code: CloseCode, message: str) -> None:
        """Close a connection another task serves, without waiting for its close handshake
        (a dead link would hold the caller for the close timeout)."""
        link.conn.close(code, message)
        task = asyncio.create_task(self._say_goodbye(link))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _route(self, ws: ServerConnection, request: Request) -> Response | None:
        if request.path != BRIDGE_PATH:
            self.closes["not_found"] = self.closes.get("not_found", 0) + 1
            return ws.respond(HTTPStatus.NOT_FOUND, "the bridge is at /v1/bridge\n")
        return None

    @property
    def connected(self) -> int:
        return len(self._live)

    @property
    def applied_events(self) -> int:
        return self.applier.applied_events

    @property
    def rejected_events(self) -> int:
        return self.applier.rejected_events

    @property
    def snapshots(self) -> int:
        return self.applier.snapshots

    async def handle(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        conn = RelayConnection(
            now=loop.time(),
            nonce=os.urandom(NONCE_BYTES),
            window_events=self._config.bridge_window_events,
            window_bytes=self._config.bridge_window_bytes,
            heartbeat_interval_s=self._config.bridge_heartbeat_s,
            handshake_timeout_s=self._config.bridge_handshake_timeout_s,
        )
        link = Link(ws, conn)
        self._conns.add(link)
        try:
            if await self._await_hello(link) and await self._admit(link):
                await self._serve(link)
        finally:
            if link.batches is not None:
                await link.batches.close()
            if link.admitted:
                link.admitted = False
                self.admission.leave()
            self._conns.discard(link)
            self._closed(link)

    async def _await_hello(self, link: Link) -> bool:
        """Read until the gateway's Hello, holding no handshake slot: a socket that says
        nothing (or garbage) costs the relay a little memory until its handshake
        deadline, never one of the slots gateways with a Hello wait for."""
        conn = link.conn
        while not conn.closed:
            await self._receive(link)
            link.held += conn.events_received()
            if any(isinstance(event, HelloReceived) for event in link.held):
                return True
        await self._drain(link)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await self._flush(link)
        return False

    async def _receive(self, link: Link) -> None:
        """Feed the connection the next frame, or the passing of its next deadline."""
        ws, conn, loop = link.ws, link.conn, asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(conn.next_deadline()):
                data = await ws.recv()
        except TimeoutError:
            conn.tick(loop.time())
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CloseStatus.MESSAGE_TOO_BIG:
                conn.close(CloseCode.TOO_LARGE, "a frame past the size limit")
            else:
                conn.connection_lost("the gateway's connection closed")
        else:
            if isinstance(data, str):
                conn.close(CloseCode.BAD_FRAME, "a text frame")
            else:
                conn.receive_data(data, loop.time())

    async def _admit(self, link: Link) -> bool:
        """Wait for a handshake slot, within the handshake's deadline.

        False when the connection ended meanwhile: timed out (`handshake_timeout`),
        the gateway gave up (its socket closed), or the relay is stopping.
        """
        conn, loop = link.conn, asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(conn.next_deadline()):
                link.admitted = await self.admission.enter()
        except TimeoutError:
            conn.tick(loop.time())
        else:
            if not link.admitted:
                conn.close(CloseCode.SHUTTING_DOWN, "the relay is restarting")
            elif link.ws.state is not SocketState.OPEN:
                conn.connection_lost("the gateway left before its handshake's turn")
        if link.admitted and not conn.closed:
            return True
        # Its turn never came: the Hello read is not answered, the close is counted.
        link.held = [event for event in link.held if not isinstance(event, HelloReceived)]
        await self._drain(link)
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            await self._flush(link)
        return False

    async def _serve(self, link: Link) -> None:
        conn = link.conn
        first = True  # the Hello read before the handshake's turn is handled first
        while not conn.closed or first:
            if not first:
                await self._receive(link)
            first = False
            await self._drain(link)
            if link.admitted and conn.state is not State.HANDSHAKE:
                link.admitted = False  # the handshake is over: the next one's turn
                self.admission.leave()
            try:
                await self._flush(link)
            except (TimeoutError, ConnectionClosed):
                conn.connection_lost("the gateway stopped reading")
                await self._drain(link)

    async def _drain(self, link: Link) -> None:
        """Handle what the connection reported, including what handling it made it report."""
        conn, loop = link.conn, asyncio.get_running_loop()
        while events := link.held or conn.events_received():
            link.held = []
            try:
                for event in sorted(events, key=lambda e: not isinstance(e, CommandResultReceived)):
                    await self._on(link, event, loop.time())
            except SQLAlchemyError:
                # Nothing of the batch is acknowledged, so the edge sends it again.
                log.exception("bridge of %s: the database refused", who(link))
                conn.close(CloseCode.INTERNAL, "the relay could not store this; try again")
            except Exception:  # a bug here must cost one bridge a reconnect, never the node
                log.exception("bridge of %s: unexpected error", who(link))
                self.closes["unexpected_error"] = self.closes.get("unexpected_error", 0) + 1
                conn.close(CloseCode.INTERNAL, "the relay failed; try again")

    async def _on(self, link: Link, event: Event, now: float) -> None:
        conn = link.conn
        if isinstance(event, HelloReceived):
            identity = await self.identities.get(event.gateway_id)
            if identity is None:
                conn.close(CloseCode.UNKNOWN_GATEWAY, "this gateway was never enrolled")
            elif not identity.active:
                conn.close(CloseCode.REVOKED, "this gateway was revoked; enrol it again")
            elif identity.hotel_id != event.hotel_id:
                conn.close(CloseCode.WRONG_HOTEL, "the gateway is enrolled for another hotel")
            else:
                link.identity = identity
                conn.challenge(now)
        elif isinstance(event, ProofReceived):
            await self._proved(link, event, now)
        elif isinstance(event, BatchReceived | SnapshotReceived) and link.identity is not None:
            if link.batches is None:  # applied beside this reader (batches.py)
                link.batches = Batches(
                    functools.partial(self._applied, link), functools.partial(self._failed, link)
                )
            await link.batches.put(event)
        elif isinstance(event, HeartbeatReceived):
            await self._heard(link, event, now)
        elif isinstance(event, CommandResultReceived) and link.identity is not None:
            # Straight from the gateway, ahead of batches (_drain): its outbox brings it durably.
            await self.relay.downlink.answered(link.identity.hotel_id, event.result)
        elif isinstance(event, Closed):
            name = event.code.value
            self.closes[name] = self.closes.get(name, 0) + 1
            link.close_reason = name
            # What the gateway or the relay chose, with why; a dropped socket is counted
            # only, and the relay's own shutdown is logged once for all bridges (close_all).
            dropped = event.by_peer and event.code is CloseCode.CONNECTION_LOST
            leaving = not event.by_peer and event.code is CloseCode.SHUTTING_DOWN
            if not (dropped or leaving):
                log.info("bridge of %s closed: %s (%s)", who(link), name, event.message)

    async def _proved(self, link: Link, event: ProofReceived, now: float) -> None:
        identity = link.identity
        assert identity is not None
        if not identity.verify(event.message, event.signature):
            link.conn.close(CloseCode.BAD_PROOF, "the proof does not match the enrolled key")
            return
        stale = self._live.get(identity.gateway_id)
        if stale is not None:
            # The newer connection is the gateway's own; the older one is a dead link,
            # whose close handshake this one does not wait for.
            self._end(stale, CloseCode.REPLACED, "the gateway connected again")
        self._live[identity.gateway_id] = link
        at = datetime.now(UTC)
        if identity.lanes is None:
            await self.links.create(identity.gateway_id, identity.hotel_id, at)
            if link.conn.closed:  # replaced or cut while its row was written
                return
            now = asyncio.get_running_loop().time()
        self.links.opened(identity.gateway_id, at)
        # The lanes as they were at the Hello: a batch of an older connection applied
        # since is sent again by the gateway and skipped here as a repeat.
        link.conn.welcome(identity.lanes or {}, now, token_trust=trust.of(self.relay, identity))
        self._hotels[identity.hotel_id] = link
        self.relay.downlink.opened(identity.hotel_id)
        if identity.lanes is None:
            # No record of this gateway here (first connection, or a restored
            # database): ask for the whole picture so the relay ends equal to it.
            link.conn.request_snapshot(f"first-{identity.gateway_id}", now)
        else:  # asked for one all the same after a restore of this database
            self.resyncs.ask(link.conn, identity.gateway_id, now)
        log.info("bridge of %s (hotel %s) open", identity.gateway_id, identity.hotel_id)
        await self.relay.live.tell(identity.hotel_id, [gateway_event(identity.gateway_id, "open")])

    async def _applied(self, link: Link, event: BatchReceived | SnapshotReceived) -> None:
        await self.applier.apply(link, event)
        try:
            await self._flush(link)  # its acknowledgements
        except (TimeoutError, ConnectionClosed):  # as in `_serve`: a gateway gone, no fault
            link.conn.connection_lost("the gateway stopped reading")
            await self._drain(link)

    def _failed(self, link: Link, exc: Exception) -> None:
        """A batch or snapshot was not applied: the connection closes, as when the reader
        applied them (nothing after it is acknowledged; the gateway sends it again)."""
        if isinstance(exc, SQLAlchemyError):
            log.error("bridge of %s: the database refused", who(link), exc_info=exc)
            self._end(link, CloseCode.INTERNAL, "the relay could not store this; try again")
        else:  # a bug here must cost one bridge a reconnect, never the node
            log.error("bridge of %s: unexpected error", who(link), exc_info=exc)
            self.closes["unexpected_error"] = self.closes.get("unexpected_error", 0) + 1
            self._end(link, CloseCode.INTERNAL, "the relay failed; try again")

    async def _heard(self, link: Link, event: HeartbeatReceived, now: float) -> None:
        identity = link.identity
        if identity is None or now - link.heard_at < HEARD_EVERY_S:
            return
        link.heard_at = now
        self.links.heard(
            identity.gateway_id,
            backlog_events=event.backlog_events,
            oldest_unsent_ms=event.oldest_unsent_ms,
            now=datetime.now(UTC),
        )

    async def _send_down(self, hotel_id: str, frames: Sequence[bridge_pb2.Frame]) -> bool:
        """Send the downlink's frames on this node's bridge of `hotel_id`, if it holds one."""
        link = self._hotels.get(hotel_id)
        if link is None or link.conn.state is not State.OPEN:
            return False
        now = asyncio.get_running_loop().time()
        for frame in frames:
            if frame.HasField("command"):
                link.conn.send_command(frame.command, now)
            elif frame.HasField("desired_change"):
                link.conn.change_desired(frame.desired_change, now)
            else:
                link.conn.acknowledge_alert(frame.alert_acknowledgement, now)
        try:
            await self._flush(link)
        except (TimeoutError, ConnectionClosed):
            return False  # not marked sent: the next bridge of the hotel gets them
        return True

    def _cut(self, gateway_id: str) -> None:
        link = self._live.get(gateway_id)
        if link is not None:
            self._end(link, CloseCode.REVOKED, "this gateway was revoked")

    async def _flush(self, link: Link) -> None:
        # A peer that stops reading fills the socket's buffer; a send that cannot
        # finish within a heartbeat interval means the link is dead.
        async with link.lock, asyncio.timeout(self._config.bridge_heartbeat_s * 3):
            for data in link.conn.data_to_send():
                await link.ws.send(data)

    def _closed(self, link: Link) -> None:
        identity = link.identity
        if identity is None or self._live.get(identity.gateway_id) is not link:
            return
        del self._live[identity.gateway_id]
        if self._hotels.get(identity.hotel_id) is link:
            del self._hotels[identity.hotel_id]
        self.links.closed(identity.gateway_id, reason=link.close_reason, now=datetime.now(UTC))
        down = [gateway_event(identity.gateway_id, link.close_reason)]
        task = asyncio.create_task(self.relay.live.tell(identity.hotel_id, down))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
