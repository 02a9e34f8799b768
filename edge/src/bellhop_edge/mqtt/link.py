"""The gateway's MQTT link to the hotel's broker (aiomqtt).

    link = MqttLink(config.mqtt, client_id=..., subscriptions=[...],
                    on_message=handle, on_connection=delivery.connected)
    task = asyncio.create_task(link.run())   # connects, reconnects, until cancelled
    link.ack(message)                        # PUBACK once its writes are committed

Owns one connection with a persistent session (fixed client id, clean
session off) so the broker queues QoS 1 messages while the gateway is away.
Reconnects with capped exponential back-off and jitter and resubscribes.
QoS 1 messages are acknowledged only when the caller says so; which ones may
be is decided by `core.delivery`. Every private aiomqtt/paho access is in
`mqtt._compat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any, Final

import aiomqtt

from bellhop_edge.config import MqttConfig
from bellhop_edge.errors import Unavailable
from bellhop_edge.mqtt import _compat

__all__ = ["LinkState", "MqttLink", "backoff"]

log = logging.getLogger(__name__)

MessageHandler = Callable[[aiomqtt.Message], None]

# Unacknowledged QoS 1 deliveries the client accepts at once (the broker's
# `max_inflight_messages` in the generated config matches it).
MAX_INFLIGHT = 1000


class LinkState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting to reconnect"


# How long after the link went down (or the gateway started) a publish still waits for
# the connection instead of failing (`Link.publish`).
CONNECTED_WAIT_S: Final = 2.0


def _cancellations() -> int:
    """How many cancellations of the current task are pending (for `_honour_cancellation`)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def _honour_cancellation(before: int) -> None:
    """Raise a cancellation asked for during an aiomqtt call that Python 3.11's
    `asyncio.wait_for` swallowed (`before`: `_cancellations()` before the call).

    aiomqtt waits for a SUBACK or a PUBACK with `wait_for`; a cancellation that
    lands as the answer arrives is lost there (fixed in 3.12): the link would go on
    reading messages, or a command's task on waiting for its device, while the
    gateway waits for them to stop. Only one asked for during the call counts: 3.11's
    TaskGroup may leave a task's count raised after one of its children failed.
    """
    if _cancellations() > before:
        raise asyncio.CancelledError


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
        on_connection: Callable[[], None] = lambda: None,
        on_state: Callable[[LinkState], None] = lambda _: None,
        reconnect_delays: Callable[[], Iterator[float]] | None = None,
    ) -> None:
        """`on_connection` runs as each new socket opens, before anything is read from it."""
        self._config = config
        self._client_id = client_id
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._on_connection = on_connection
        self._on_state = on_state
        self._delays = reconnect_delays or (
            lambda: backoff(config.reconnect_min_s, config.reconnect_max_s)
        )
        self._client: aiomqtt.Client | None = None
        self.state = LinkState.CONNECTING
        self.connected = asyncio.Event()
        self._down_since = time.monotonic()  # not connected since (the start, or a drop)
        self.connects = 0
        self.drops = 0
        self._paho: Any = None  # the paho client of the current socket, for acks
        self._dropping = False
        self._drop_delay = 0.0
        self._stopping = False

    def _set_state(self, state: LinkState) -> None:
        self.state = state
        if state is LinkState.CONNECTED:
            self.connected.set()
        elif self.connected.is_set():
            self.connected.clear()
            self._down_since = time.monotonic()
        self._on_state(state)

    def _make_client(self) -> aiomqtt.Client:
        config = self._config
        tls_context = None
        if config.tls_ca is not None:
            tls_context = ssl.create_default_context(cafile=str(config.tls_ca))
        client = aiomqtt.Client(
            config.host,
            config.port,
            identifier=self._client_id,
            username=config.username,
            password=config.resolved_password(),
            clean_session=False,
            keepalive=config.keepalive_s,
            timeout=config.connect_timeout_s,
            tls_context=tls_context,
            max_inflight_messages=MAX_INFLIGHT,
            queue_type=_compat.dispatching_queue(self._on_message),
            # Commands and acks are tiny; Nagle's algorithm would add ~40 ms per hop.
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )
        _compat.enable_manual_ack(client)
        _compat.read_in_chunks(client)
        _compat.on_socket_open(client, self._socket_opened)
        return client

    def _socket_opened(self, paho: Any, sock: Any) -> None:
        # A broker sends a persistent session's queued messages right after
        # CONNACK, before the subscriptions are even confirmed: the new
        # connection is announced before anything is read from it.
        self._paho = paho
        self._on_connection()

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
                        before = _cancellations()
                        await client.subscribe(topic, qos=1, timeout=self._config.connect_timeout_s)
                        _honour_cancellation(before)
                    self.connects += 1
                    delays = self._delays()
                    self._set_state(LinkState.CONNECTED)
                    log.info("connected to broker %s:%s", self._config.host, self._config.port)
                    # Messages are dispatched as they arrive; iterating only
                    # waits for the disconnection, which ends it with MqttError.
                    async for _ in client.messages:
                        pass
            except aiomqtt.MqttError as exc:
                if not (self._dropping or self._stopping):
                    log.warning("broker connection lost: %s", exc)
            except (OSError, ValueError) as exc:
                # An unreadable password file or CA: keep trying, it may be fixed.
                log.error("cannot connect to the broker: %s", exc)
            finally:
                self._client = None
            if self._stopping:
                self._set_state(LinkState.WAITING)
                return
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
        _compat.disconnect(client)
        return True

    def stop(self) -> bool:
        """Disconnect cleanly (acknowledgements already queued go out first); `run` returns.

        Returns whether there was a connection to close; `run` also returns
        on its own if it was between connections.
        """
        self._stopping = True
        client = self._client
        if client is None:
            return False
        _compat.disconnect(client)
        return True

    def socket(self) -> Any:
        """What the current connection reads from (the chunked reader), or None."""
        client = self._client
        return None if client is None else _compat.socket_of(client)

    def ack(self, message: aiomqtt.Message) -> None:
        """Acknowledge a QoS 1 message on the current connection.

        The caller (`core.delivery`) decides that the message came in on it.
        """
        if self._paho is not None and message.qos > 0:
            _compat.ack(self._paho, message.mid, message.qos)

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False
    ) -> None:
        """Publish on the current connection. In the first CONNECTED_WAIT_S without one
        (the gateway starting, or the broker just gone), wait for it until then: it is
        usually back within moments, and a command given meanwhile (a queued remote
        command sent as the bridge opens) must not fail for that. Past that, fail at once:
        a fleet or a burst must not wait in turn on a broker that stays away."""
        if not self.connected.is_set():
            left = self._down_since + CONNECTED_WAIT_S - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(left, 0.0)):  # not wait_for: see below
                    await self.connected.wait()
        client = self._client
        if client is None or not self.connected.is_set():
            raise Unavailable("not connected to the broker")
        before = _cancellations()
        try:
            await client.publish(
                topic, payload, qos=qos, retain=retain, timeout=self._config.connect_timeout_s
            )
        except aiomqtt.MqttError as exc:
            raise Unavailable(f"publish failed: {exc}") from exc
        _honour_cancellation(before)
