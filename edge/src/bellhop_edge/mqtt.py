"""The gateway's MQTT link to the hotel's broker (aiomqtt).

Owns one connection with a persistent session (fixed client id, clean
session off) so the broker queues QoS 1 messages while the gateway is away.
Reconnects with capped exponential back-off and jitter and resubscribes.
QoS 1 messages are acknowledged to the broker only when the caller says so,
after their effects are committed to SQLite: a PUBACK means "stored".
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import aiomqtt

from bellhop_edge.config import MqttConfig
from bellhop_edge.errors import Unavailable

log = logging.getLogger(__name__)

MessageHandler = Callable[[aiomqtt.Message], None]


def _dispatching_queue(handler: MessageHandler) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue type whose `put_nowait` hands each message straight to `handler`.

    aiomqtt takes the class of its incoming queue as a parameter. Its message
    iterator spends a task and an `asyncio.wait` per message; handling each
    message synchronously as paho delivers it skips both, and the handler
    itself decides what must be awaited (the commit, for a PUBACK).
    """

    class DispatchingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            try:
                handler(item)
            except Exception:
                # paho would stop reading the socket if a callback raised.
                log.exception("message handler failed on %s", item.topic)

    return DispatchingQueue


READ_CHUNK = 16 * 1024


class _ReadBuffer:
    """The broker socket as paho sees it, read in chunks instead of a few bytes.

    paho reads every packet with at least three `recv` calls (type byte,
    length bytes, body) and aiomqtt wakes once per packet, so a burst of
    small telemetry messages costs several system calls and an event-loop
    turn each. Here one `recv` fills a buffer that serves paho's small reads.

    `pending()` is paho's and aiomqtt's own hook for TLS sockets, which hold
    decrypted bytes the same way: while it is non-zero aiomqtt's reader keeps
    reading. To keep a busy broker from holding the event loop in that reader
    (timers, the store's hand-over and the LAN API must run too), the socket
    itself is read once per loop turn; past that, `recv` says "would block"
    and the loop calls the reader again on its next turn.
    """

    __slots__ = ("_buffer", "_loop", "_new_turn", "_offset", "_sock", "_spent")

    def __init__(self, sock: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._loop = loop
        self._buffer = b""
        self._offset = 0
        self._spent = False

        def new_turn() -> None:
            self._spent = False

        self._new_turn = new_turn

    def recv(self, size: int) -> bytes:
        start = self._offset
        if start >= len(self._buffer):
            if self._spent and not self._sock_pending():
                raise BlockingIOError
            data: bytes = self._sock.recv(max(size, READ_CHUNK))
            if not self._spent:
                self._spent = True
                self._loop.call_soon(self._new_turn)
            if len(data) <= size:
                return data
            self._buffer, start = data, 0
        end = start + size
        self._offset = end
        return self._buffer[start:end]

    def _sock_pending(self) -> int:
        more = getattr(self._sock, "pending", None)
        return more() if more is not None else 0

    def pending(self) -> int:
        return max(len(self._buffer) - self._offset, 0) + self._sock_pending()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def read_in_chunks(client: aiomqtt.Client) -> None:
    """Put a `_ReadBuffer` between paho and each new socket (see above).

    Call it from the event loop that will run the client.
    """
    loop = asyncio.get_running_loop()
    paho = client._client
    opened = paho.on_socket_open

    def on_socket_open(mqttc: Any, userdata: Any, sock: Any) -> None:
        # aiomqtt applies its socket options (TCP_NODELAY) only to what is a
        # socket.socket when it is done connecting, which the buffer is not.
        if isinstance(sock, socket.socket):
            for option in client._socket_options:
                sock.setsockopt(*option)
        # paho has just stored `sock` as its `_sock` and reads nothing until
        # this callback has registered the reader on the event loop.
        mqttc._sock = _ReadBuffer(sock, loop)
        if opened is not None:
            opened(mqttc, userdata, sock)

    paho.on_socket_open = on_socket_open


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting to reconnect"
    CLOSED = "closed"


def backoff(
    minimum: float, maximum: float, *, factor: float = 2.0, jitter: float = 0.5
) -> Iterator[float]:
    """Capped exponential delays with proportional jitter, forever."""
    delay = minimum
    while True:
        yield delay * (1 - jitter * random.random())
        delay = min(delay * factor, maximum)


class MqttLink:
    """Keeps the gateway connected; hands every message to `on_message`."""

    def __init__(
        self,
        config: MqttConfig,
        *,
        client_id: str,
        subscriptions: list[str],
        on_message: MessageHandler,
        on_state: Callable[[LinkState], None] = lambda _: None,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
    ) -> None:
        self._config = config
        self._client_id = client_id
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_state = on_state
        self._delays = reconnect_delays or (
            lambda: backoff(config.reconnect_min_s, config.reconnect_max_s)
        )
        self._client: aiomqtt.Client | None = None
        self.state = LinkState.CONNECTING
        self.connected = asyncio.Event()
        self.connects = 0
        # Which socket is current. Message ids are only valid on the socket
        # they came in on; counted when the socket opens, because a broker
        # sends a persistent session's queued messages right after CONNACK,
        # before the subscriptions are even confirmed.
        self._socket = 0
        self._paho: Any = None  # the client of the current socket, for acks
        self.drops = 0
        self._dropping = False
        self._drop_delay = 0.0

    def _set_state(self, state: LinkState) -> None:
        self.state = state
        if state is LinkState.CONNECTED:
            self.connected.set()
        else:
            self.connected.clear()
        self._on_state(state)

    def _make_client(self) -> aiomqtt.Client:
        tls_context = None
        if self._config.tls_ca is not None:
            tls_context = ssl.create_default_context(cafile=str(self._config.tls_ca))
        client = aiomqtt.Client(
            self._config.host,
            self._config.port,
            identifier=self._client_id,
            username=self._config.username,
            password=self._config.resolved_password(),
            clean_session=False,
            keepalive=self._config.keepalive_s,
            timeout=self._config.connect_timeout_s,
            tls_context=tls_context,
            max_inflight_messages=1000,
            queue_type=_dispatching_queue(self._on_message),
            # Commands and acks are tiny; Nagle's algorithm would add ~40 ms per hop.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        # aiomqtt has no public switch for manual acknowledgement; paho's is
        # what lets us send PUBACK only after the message is committed.
        client._client.manual_ack_set(True)
        read_in_chunks(client)
        paho = client._client
        opened = paho.on_socket_open

        def on_socket_open(mqttc: Any, userdata: Any, sock: Any) -> None:
            self._socket += 1  # before anything is read from it
            self._paho = mqttc
            if opened is not None:
                opened(mqttc, userdata, sock)

        paho.on_socket_open = on_socket_open
        return client

    async def run(self) -> None:
        """Connect, consume, reconnect; returns only when cancelled."""
        delays = self._delays()
        while True:
            self._set_state(LinkState.CONNECTING)
            try:
                client = self._make_client()
                async with client:
                    self._client = client
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1, timeout=self._config.connect_timeout_s)
                    self.connects += 1
                    delays = self._delays()
                    self._set_state(LinkState.CONNECTED)
                    log.info("connected to broker %s:%s", self._config.host, self._config.port)
                    # Messages are dispatched as they arrive; iterating only
                    # waits for the disconnection, which ends it with MqttError.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                if not self._dropping:
                    log.warning("broker connection lost: %s", exc)
            except (OSError, ValueError) as exc:
                # An unreadable password file or CA: keep trying, it may be fixed.
                log.error("cannot connect to the broker: %s", exc)
            finally:
                self._client = None
            self._set_state(LinkState.WAITING)
            delay = max(next(delays), self._drop_delay)
            self._dropping, self._drop_delay = False, 0.0
            await asyncio.sleep(delay)

    def drop(self, delay_s: float) -> bool:
        """Disconnect now and reconnect after `delay_s`, so the broker redelivers.

        Unacknowledged QoS 1 messages of a persistent session are sent again
        only on a new connection. Once per connection (returns whether this call
        dropped it); the session is kept.
        """
        client = self._client
        if client is None or self._dropping or not self.connected.is_set():
            return False
        self._dropping, self._drop_delay = True, delay_s
        self.drops += 1
        client._client.disconnect()
        return True

    @property
    def connection(self) -> int:
        """Which connection is current; message ids are only valid within one."""
        return self._socket

    def ack(self, message: aiomqtt.Message, connection: int | None = None) -> None:
        """Acknowledge a QoS 1 message now that its effects are durable.

        A message from an earlier connection is not acknowledged on this one:
        its id may have been reused, and the broker redelivers it anyway.
        """
        paho = self._paho
        if paho is None or message.qos == 0:
            return
        if connection is not None and connection != self._socket:
            return
        paho.ack(message.mid, message.qos)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False
    ) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            raise Unavailable("not connected to the broker")
        try:
            await client.publish(
                topic, payload, qos=qos, retain=retain, timeout=self._config.connect_timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise Unavailable(f"publish failed: {exc}") from exc
