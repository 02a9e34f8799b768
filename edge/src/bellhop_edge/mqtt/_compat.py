"""Every access to aiomqtt's and paho's private parts, in one place.

The link needs four things that neither library offers publicly:

- manual QoS 1 acknowledgement, so that a PUBACK is sent only once the
  message's writes are committed (paho has it; aiomqtt does not expose it);
- a hook when a socket opens, to number connections (message ids are valid
  on one connection only) and to read the socket in chunks (`ReadBuffer`);
- handing each message to a callback as paho delivers it, instead of through
  aiomqtt's iterator (a task and an `asyncio.wait` per message);
- dropping the connection without closing the client, so that the broker
  sends unacknowledged messages again on the next one.

Each is a function here, written against the versions pinned in
edge/pyproject.toml (aiomqtt 2.4-2.5, paho-mqtt 2.1-2.2) and checked by
tests/unit/edge/test_mqtt_compat.py; a new release of either is admitted only
after those tests pass with it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Final

import aiomqtt

__all__ = [
    "READ_CHUNK",
    "TESTED",
    "ReadBuffer",
    "ack",
    "disconnect",
    "dispatching_queue",
    "enable_manual_ack",
    "on_socket_open",
    "read_in_chunks",
    "socket_of",
]

log = logging.getLogger(__name__)

# The releases this module was written and tested against: (min, max) minor.
TESTED: Final = {"aiomqtt": ((2, 4), (2, 5)), "paho-mqtt": ((2, 1), (2, 2))}

READ_CHUNK: Final = 16 * 1024

MessageHandler = Callable[[aiomqtt.Message], None]


def installed() -> dict[str, tuple[int, int]]:
    """The installed (major, minor) of each library this module reaches into."""
    out = {}
    for name in TESTED:
        major, minor, *_ = (int(part) for part in version(name).split(".")[:2])
        out[name] = (major, minor)
    return out


def _paho(client: aiomqtt.Client) -> Any:
    return client._client  # aiomqtt keeps its paho client private


def dispatching_queue(handler: MessageHandler) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue type whose `put_nowait` hands each message straight to `handler`.

    aiomqtt takes the class of its incoming queue as a parameter (public), and
    puts every message with `put_nowait` (not public). Handling each message
    synchronously as paho delivers it skips a task and an `asyncio.wait` per
    message; the handler itself decides what must be awaited.
    """

    class DispatchingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            try:
                handler(item)
            except Exception:
                # paho would stop reading the socket if a callback raised.
                log.exception("message handler failed on %s", item.topic)

    return DispatchingQueue


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """PUBACK only when `ack` is called, not when the message is read."""
    _paho(client).manual_ack_set(True)


def on_socket_open(client: aiomqtt.Client, hook: Callable[[Any, Any], None]) -> None:
    """Call `hook(paho_client, sock)` as each new socket opens, before it is read."""
    paho = _paho(client)
    opened = paho.on_socket_open

    def chained(mqttc: Any, userdata: Any, sock: Any) -> None:
        hook(mqttc, sock)
        if opened is not None:
            opened(mqttc, userdata, sock)

    paho.on_socket_open = chained


def ack(paho: Any, mid: int, qos: int) -> None:
    """Send the PUBACK of message `mid` on the socket `paho` is connected with."""
    paho.ack(mid, qos)


def disconnect(client: aiomqtt.Client) -> None:
    """End the connection now; the client's context ends with a disconnection error."""
    _paho(client).disconnect()


def socket_of(client: aiomqtt.Client) -> Any:
    """What paho reads from (a `ReadBuffer` once `read_in_chunks` is set up)."""
    return _paho(client).socket()


class ReadBuffer:
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
    """Put a `ReadBuffer` between paho and each new socket (see above).

    Call it from the event loop that will run the client.
    """
    loop = asyncio.get_running_loop()
    options = client._socket_options  # set by aiomqtt's constructor

    def wrap(mqttc: Any, sock: Any) -> None:
        # aiomqtt applies its socket options (TCP_NODELAY) only to what is a
        # socket.socket when it is done connecting, which the buffer is not.
        if isinstance(sock, socket.socket):
            for option in options:
                sock.setsockopt(*option)
        # paho has just stored `sock` as its `_sock` and reads nothing until
        # the open callback has registered the reader on the event loop.
        mqttc._sock = ReadBuffer(sock, loop)

    on_socket_open(client, wrap)
