"""The gateway's bridge client: a thin asyncio driver over `bellhop_bridge.EdgeConnection`.

    client = BridgeClient(identity, key, store=..., writer=..., snapshot=..., config=..., mark=...)
    task = asyncio.create_task(client.run())   # connects, streams, reconnects; until cancelled

One WebSocket to the relay at a time. After the handshake it streams each
outbox lane from the relay's last acknowledged sequence (priority first),
within the relay's window, and records each acknowledgement durably. A
non-fatal close (a dead link, the relay restarting) is followed by a
reconnect with capped exponential back-off and full jitter; a fatal one (the
gateway was revoked) ends `run`, with the reason logged and kept in `stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sqlite3
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import (
    LANES,
    Acked,
    AlertAcknowledged,
    CloseCode,
    Closed,
    CommandReceived,
    DesiredChangeReceived,
    EdgeConnection,
    Event,
    Opened,
    SnapshotRequested,
    State,
    after_restart,
    full_jitter,
)
from bellhop_bridge.frames import MAX_FRAME_BYTES
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from bellhop_edge.bridge.backlog import cannot_fit, read
from bellhop_edge.bridge.identity import Identity
from bellhop_edge.bridge.mark import SentMark
from bellhop_edge.bridge.remote import Control, RemoteControl
from bellhop_edge.bridge.snapshot import snapshot
from bellhop_edge.bridge.trust import TrustCache
from bellhop_edge.config import BridgeConfig, EdgeConfig
from bellhop_edge.core.alerts import AlertBook
from bellhop_edge.core.hotel import Hotel
from bellhop_edge.core.ops import AckOutbox
from bellhop_edge.errors import ConfigError, EdgeError
from bellhop_edge.store import EdgeStore, StoreWriter, outbox

__all__ = ["BridgeClient", "BridgeState", "BridgeStats", "bridge_for"]

log = logging.getLogger(__name__)

SOFTWARE_VERSION: Final = "bellhop-edge 0.1.0"
# How often the backlog figures the heartbeats carry are read again.
BACKLOG_EVERY_S: Final = 5.0


class BridgeState(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    WAITING = "waiting to reconnect"
    STOPPED = "stopped: the relay refused this gateway"


@dataclass(slots=True)
class BridgeStats:
    connects: int = 0
    opens: int = 0
    events_sent: int = 0
    acked: dict[int, int] = field(default_factory=dict)
    closes: dict[str, int] = field(default_factory=dict)
    last_close: str | None = None
    resyncs: int = 0  # snapshots sent because one end's sequence went back
    backlog: int = 0  # events not yet acknowledged, as last counted


class BridgeClient:
    """Keeps one hotel's bridge to the relay up; owns nothing but its socket."""

    def __init__(
        self,
        identity: Identity,
        key: Ed25519PrivateKey,
        *,
        store: EdgeStore,
        writer: StoreWriter,
        snapshot: Callable[[str], bridge_pb2.Snapshot],
        config: BridgeConfig,
        remote: RemoteControl | None = None,
        mark: SentMark,
        delays: Callable[[], Iterator[float]] | None = None,
        trust: TrustCache | None = None,
    ) -> None:
        self.identity = identity
        self._key = key
        self._store = store
        self._writer = writer
        self._snapshot = snapshot
        self._config = config
        self.remote = remote
        self.trust = trust  # where the relay's token keys for the LAN API are kept
        # The open connection, for answers that finish after the frame that asked.
        self._current: tuple[ClientConnection, EdgeConnection] | None = None
        self._delays = delays or (
            lambda: full_jitter(config.reconnect_min_s, config.reconnect_max_s)
        )
        self._restart_delays = delays or (
            lambda: after_restart(config.reconnect_min_s, config.reconnect_max_s)
        )
        self.state = BridgeState.CONNECTING
        self.stats = BridgeStats()
        self._more = asyncio.Event()  # the outbox grew, or the window opened
        self._send_lock = asyncio.Lock()
        self._mark = mark
        self._restored = False  # found at start-up: the relay gets a snapshot

    def summary(self) -> dict[str, Any]:
        """For the gateway's status: the bridge's state, last close and backlog."""
        return {
            "cloud_bridge": self.state.value,
            "cloud_last_close": self.stats.last_close or "",
            "cloud_backlog": self.stats.backlog,
        }

    def wake(self) -> None:
        """Something may be ready to send (a commit, an ack)."""
        self._more.set()

    async def run(self) -> None:
        """Connect, stream, reconnect; returns when cancelled or refused for good."""
        try:
            await self._run()
        finally:
            if self.remote is not None:
                await self.remote.close()

    async def _run(self) -> None:
        await self._check_restored()
        delays = self._delays()
        while True:
            self.state = BridgeState.CONNECTING
            self.stats.connects += 1
            closed: Closed | None = None
            opened = False
            try:
                async with self._connected() as ws:
                    opened, closed = await self._session(ws)
            except (OSError, TimeoutError, InvalidURI, InvalidHandshake, ConnectionClosed) as exc:
                self._note(f"cannot reach the relay: {exc}")
            except Exception:  # a bug must cost a reconnect, never the hotel's bridge for good
                log.exception("bridge: unexpected error; reconnecting")
                self._note("internal: unexpected error")
            if closed is not None:
                self._note(f"{closed.code.value}: {closed.message}")
                if closed.fatal:
                    self.state = BridgeState.STOPPED
                    log.error(
                        "the relay refused this gateway for good (%s: %s); not reconnecting."
                        " Enrol it again (`bellhop edge enrol`).",
                        closed.code.value,
                        closed.message,
                    )
                    return
            if opened:
                restarting = closed is not None and closed.code is CloseCode.SHUTTING_DOWN
                delays = self._restart_delays() if restarting else self._delays()
            self.state = BridgeState.WAITING
            delay = next(delays)
            # Counted while waiting anyway: off the path of the next connection's first batch.
            with contextlib.suppress(EdgeError, OSError, sqlite3.Error):
                self.stats.backlog = (await asyncio.to_thread(self._store.outbox_backlog)).total
            await asyncio.sleep(delay)

    async def _check_restored(self) -> None:
        """At start-up, before anything new is numbered: has this gateway sent events
        past what its outbox holds? Then its database was restored from an older copy,
        and what it numbers from now on must go past what the relay may hold."""
        sent = self._mark.value

        def rebase(db: sqlite3.Connection) -> tuple[int, int] | None:
            # In the writer's thread, ahead of any write queued after it.
            last_seq = outbox.last_seq(db)
            return (last_seq, outbox.rebase(db, {}, sent)) if sent > last_seq else None

        try:
            outcome = await self._writer.call(rebase)
        except (EdgeError, sqlite3.Error):
            log.exception("bridge: could not check the outbox against the sent mark")
            return
        if outcome is not None:
            self._restored = True
            log.warning(
                "this gateway sent events up to %d, its outbox only reached %d (restored"
                " from an older copy?): %d unsent events renumbered past them",
                sent,
                *outcome,
            )

    @contextlib.asynccontextmanager
    async def _connected(self) -> AsyncIterator[ClientConnection]:
        ws = await self._connect()
        try:
            yield ws
        finally:
            # websockets closes by waiting for the close handshake and then for the
            # socket to drain, which on a path that takes nothing lasts until the kernel
            # gives up (many minutes); past the timeout the socket is dropped instead.
            try:
                async with asyncio.timeout(self._config.connect_timeout_s):
                    await ws.close()
            except TimeoutError:
                ws.transport.abort()

    def _connect(self) -> connect:
        config = self._config
        tls: ssl.SSLContext | None = None
        if self.identity.bridge_url.startswith("wss:"):
            tls = ssl.create_default_context(
                cafile=str(config.tls_ca) if config.tls_ca is not None else None
            )
        return connect(
            self.identity.bridge_url,
            ssl=tls,
            open_timeout=config.connect_timeout_s,
            close_timeout=config.connect_timeout_s,
            # The protocol has its own heartbeats, which also carry the backlog.
            ping_interval=None,
            max_size=MAX_FRAME_BYTES,
            compression=None,
            proxy=None,
            user_agent_header=SOFTWARE_VERSION,
        )

    async def _session(self, ws: ClientConnection) -> tuple[bool, Closed | None]:
        loop = asyncio.get_running_loop()
        conn = EdgeConnection(
            gateway_id=self.identity.gateway_id,
            hotel_id=self.identity.hotel_id,
            software_version=SOFTWARE_VERSION,
            sign=self._key.sign,
            now=loop.time(),
        )
        opened, closed = False, None
        sender: asyncio.Task[None] | None = None
        try:
            await self._flush(ws, conn)
            while not conn.closed:
                try:
                    async with asyncio.timeout_at(conn.next_deadline()):
                        data = await ws.recv()
                except TimeoutError:
                    conn.tick(loop.time())
                except ConnectionClosed as exc:
                    conn.connection_lost(f"the connection closed ({exc.rcvd or 'no close frame'})")
                else:
                    conn.receive_data(
                        data if isinstance(data, bytes) else data.encode(), loop.time()
                    )
                for event in conn.events_received():
                    if isinstance(event, Opened):
                        opened = True
                        self._current = (ws, conn)
                        await self._opened(event, conn, loop.time())
                        sender = asyncio.create_task(
                            self._stream(ws, conn, dict(event.last_acked)), name="bridge-stream"
                        )
                    elif isinstance(event, Closed):
                        closed = event
                    else:
                        self._handle(event, conn, loop.time())
                with contextlib.suppress(ConnectionClosed):
                    await self._flush(ws, conn)
            # Ended by the sender (a send that could not finish, or its own failure).
            for event in conn.events_received():
                if isinstance(event, Closed):
                    closed = event
        finally:
            self._current = None
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        return opened, closed

    async def _opened(self, event: Opened, conn: EdgeConnection, now: float) -> None:
        if self.trust is not None:  # cached before the bridge counts as open
            await asyncio.to_thread(self.trust.keep, event.token_trust)
        self.state = BridgeState.OPEN
        self.stats.opens += 1
        self.stats.acked = dict(event.last_acked)
        log.info(
            "bridge to %s open; resuming after %s",
            self.identity.bridge_url,
            ", ".join(f"lane {lane}: {seq}" for lane, seq in sorted(event.last_acked.items())),
        )
        relay = event.last_acked
        last_seq = await asyncio.to_thread(self._store.outbox_last_seq)
        mine = await asyncio.to_thread(self._store.outbox_acked)
        if max(relay.values(), default=0) > last_seq:
            # The relay has sequences this outbox never made (restored from an older
            # copy, sent mark or not): renumber the unsent past them, or they are dropped.
            moved = await self._writer.call(lambda db: outbox.rebase(db, relay))
            log.warning(
                "the relay holds events up to %d, this outbox only reached %d (restored"
                " from an older copy?): %d unsent events renumbered; sending a snapshot",
                max(relay.values()),
                last_seq,
                moved,
            )
        elif self._restored:
            log.warning("sending a snapshot: this gateway's database went back in time")
        elif not any(relay.get(lane, 0) < mine.get(lane, 0) for lane in LANES):
            return
        else:
            # The relay forgot what it had acknowledged (its database was restored).
            log.warning("the relay is behind its own acknowledgements; sending a snapshot")
        self._restored = False
        self.stats.resyncs += 1
        self._send_snapshot(conn, "edge-resync", now)

    def _send_snapshot(self, conn: EdgeConnection, request_id: str, now: float) -> None:
        picture = self._snapshot(request_id)
        size = picture.ByteSize()
        if size > MAX_FRAME_BYTES - 64:
            # Sent anyway it would be refused as too large on every connection, forever.
            log.error(
                "the hotel's snapshot is %d bytes, more than one bridge frame holds (%d):"
                " not sent; the relay's picture of rooms, devices and state is not refreshed",
                size,
                MAX_FRAME_BYTES,
            )
            return
        conn.send_snapshot(picture, now)

    def _handle(self, event: Event, conn: EdgeConnection, now: float) -> None:
        if isinstance(event, Acked):
            self.stats.acked[event.lane] = event.seq
            # Recorded durably; acknowledged rows are pruned by retention.
            with contextlib.suppress(EdgeError):
                self._writer.submit(AckOutbox(event.seq, event.lane))
            self.wake()
        elif isinstance(event, SnapshotRequested):
            self._send_snapshot(conn, event.request_id, now)
        elif isinstance(event, AlertAcknowledged):
            if self.remote is not None:
                self.remote.acknowledge(event.acknowledgement)
        elif isinstance(event, DesiredChangeReceived):
            if self.remote is not None:
                self.remote.desired(event.change)
        elif isinstance(event, CommandReceived):
            if self.remote is not None:
                self.remote.command(event.command, self._reply)
            else:
                result = bridge_pb2.RemoteCommandResult()
                result.result.command_id = event.command.command.command_id[:64]
                result.result.status = common_pb2.COMMAND_STATUS_FAILED
                result.result.error = "remote control is off on this gateway"
                conn.send_command_result(result, now)

    async def _reply(self, result: bridge_pb2.RemoteCommandResult) -> None:
        """A remote command's result, on the bridge if it is open; otherwise the outbox
        brings it (and the relay asks again after reconnecting)."""
        if self._current is None:
            return
        ws, conn = self._current
        if conn.state is not State.OPEN:
            return
        conn.send_command_result(result, asyncio.get_running_loop().time())
        with contextlib.suppress(ConnectionClosed):
            await self._flush(ws, conn)

    async def _stream(
        self, ws: ClientConnection, conn: EdgeConnection, cursors: dict[int, int]
    ) -> None:
        """Send each lane after its cursor, priority first, as the window allows.

        A failure here ends the connection at once, with a reason: a bridge that
        answers heartbeats but sends nothing would look healthy while its
        backlog grows.
        """
        try:
            await self._send_backlog(ws, conn, cursors)
        except ConnectionClosed:
            raise
        except Exception:
            log.exception("bridge: the sender failed; reconnecting")
            conn.close(CloseCode.INTERNAL, "the gateway could not send its outbox")
            with contextlib.suppress(ConnectionClosed):
                await self._flush(ws, conn)

    async def _send_backlog(
        self, ws: ClientConnection, conn: EdgeConnection, cursors: dict[int, int]
    ) -> None:
        loop = asyncio.get_running_loop()
        # The first count waits: at a million events it takes longer than the first batch.
        next_backlog = loop.time() + BACKLOG_EVERY_S
        while not conn.closed:
            self._more.clear()
            if loop.time() >= next_backlog:
                backlog = await asyncio.to_thread(self._store.outbox_backlog)
                conn.backlog = (backlog.total, backlog.oldest_ms, 0)
                self.stats.backlog = backlog.total
                next_backlog = loop.time() + BACKLOG_EVERY_S
            left_events, left_bytes = conn.window_left()
            limit = min(left_events, self._config.batch_events)
            store = self._store
            batch = (
                await asyncio.to_thread(read, store, cursors, limit, left_bytes) if limit else []
            )
            if not batch:
                # Nothing in flight and still no room: the relay's window is smaller than
                # the next event, and the bridge would stall without a word.
                if limit and not conn.in_flight() and await cannot_fit(store, cursors, left_bytes):
                    log.error("bridge: a window of %d bytes cannot hold the next event", left_bytes)
                    conn.close(CloseCode.WINDOW_EXCEEDED, "the window cannot hold the next event")
                    await self._flush(ws, conn)
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BACKLOG_EVERY_S):
                        await self._more.wait()
                continue
            top = max(seq for _, seq, _ in batch)
            if top > self._mark.value:
                await asyncio.to_thread(self._mark.cover, top)
            conn.send_events(batch, loop.time())
            self.stats.events_sent += len(batch)
            for lane, seq, _ in batch:
                cursors[lane] = max(cursors[lane], seq)
            await self._flush(ws, conn)

    async def _flush(self, ws: ClientConnection, conn: EdgeConnection) -> None:
        # One sender at a time: frames must leave in the order they were made.
        async with self._send_lock:
            for data in conn.data_to_send():
                try:
                    # A path that takes nothing (a full send buffer on a half-open
                    # link) is as dead as a silent one, and found as soon.
                    async with asyncio.timeout(conn.peer_timeout_s):
                        await ws.send(data)
                except TimeoutError:
                    conn.connection_lost(
                        f"a frame could not be sent within {conn.peer_timeout_s:g} s"
                    )
                    return

    def _note(self, reason: str) -> None:
        self.stats.last_close = reason
        key = reason.split(":", 1)[0]
        self.stats.closes[key] = self.stats.closes.get(key, 0) + 1
        log.warning("bridge closed: %s", reason)


def bridge_for(
    config: EdgeConfig,
    *,
    store: EdgeStore,
    writer: StoreWriter,
    hotel: Hotel,
    alerts: AlertBook,
    control: Control | None = None,
) -> BridgeClient | None:
    """The gateway's bridge client, or None when it is not enrolled (or the bridge is off)."""
    if not config.bridge.enabled:
        return None
    identity = Identity.load(config.data_dir)
    if identity is None:
        return None
    if identity.hotel_id != config.hotel_id:
        raise ConfigError(
            f"enrolled for hotel {identity.hotel_id!r}, configured for {config.hotel_id!r}"
        )
    client = BridgeClient(
        identity,
        Identity.key(config.data_dir),
        store=store,
        writer=writer,
        snapshot=lambda request_id: snapshot(hotel, alerts, request_id, store.outbox_last_seq()),
        config=config.bridge,
        mark=SentMark.load(Identity.directory(config.data_dir)),
        trust=TrustCache(Identity.directory(config.data_dir)),
        remote=None if control is None else RemoteControl(control, config.commands),
    )
    writer.add_listener(lambda _report: client.wake())
    return client
