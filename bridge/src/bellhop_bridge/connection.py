"""What both ends of a bridge share: frames in, frames and events out, timers.

A connection is a plain object fed bytes and times; it never touches a
socket or a clock. Its driver loops:

    conn.receive_data(message, now)       # each WebSocket message
    conn.tick(now)                        # at conn.next_deadline() at the latest
    for data in conn.data_to_send(): await ws.send(data)
    for event in conn.events_received(): ...
    if conn.closed: close the socket

Heartbeats go both ways every `heartbeat_interval_s`; a peer silent for
longer than `peer_timeout_s` is gone even if its socket looks open (a link
that drops packets without a FIN), and the connection closes with
PEER_TIMEOUT. Any broken rule closes it with an `Error` frame naming the
code; an `Error` from the peer closes it too.
"""

from __future__ import annotations

import enum
from typing import Final

from bellhop.bridge.v1 import bridge_pb2

from bellhop_bridge import frames
from bellhop_bridge.errors import FATAL, CloseCode, ProtocolError
from bellhop_bridge.events import Closed, Event, HeartbeatReceived

__all__ = ["Connection", "State"]

# Bounds on what a peer may ask for (seconds).
MIN_HEARTBEAT_S: Final = 0.05
MAX_HEARTBEAT_S: Final = 300.0


class State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class Connection:
    """The part of a bridge connection both ends share."""

    def __init__(
        self,
        *,
        now: float,
        handshake_timeout_s: float,
        heartbeat_interval_s: float,
        peer_timeout_s: float,
    ) -> None:
        if not MIN_HEARTBEAT_S <= heartbeat_interval_s <= MAX_HEARTBEAT_S:
            raise ValueError(f"heartbeat interval {heartbeat_interval_s} s is out of range")
        if peer_timeout_s <= heartbeat_interval_s or handshake_timeout_s <= 0:
            raise ValueError("the peer timeout must exceed the heartbeat interval")
        self.state = State.HANDSHAKE
        self.heartbeat_interval_s = heartbeat_interval_s
        self.peer_timeout_s = peer_timeout_s
        self._handshake_deadline = now + handshake_timeout_s
        self._last_received = now
        self._last_sent = now
        self._out: list[bytes] = []
        self._events: list[Event] = []

    # -- what the driver reads ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def next_deadline(self) -> float:
        """The latest time at which `tick` must be called."""
        if self.state is State.HANDSHAKE:
            return self._handshake_deadline
        return min(
            self._last_received + self.peer_timeout_s,
            self._last_sent + self.heartbeat_interval_s,
        )

    # -- what the driver feeds ---------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        if self.state is State.CLOSED:
            return
        self._last_received = now
        try:
            frame = frames.decode(data)
            if frame.HasField("error"):
                self._peer_closed(frame.error)
                return
            if frame.HasField("heartbeat") and self.state is State.OPEN:
                self._heartbeat(frame.heartbeat)
                return
            self._handle(frame, now)
        except ProtocolError as exc:
            self.close(exc.code, exc.message)

    def tick(self, now: float) -> None:
        if self.state is State.CLOSED:
            return
        if self.state is State.HANDSHAKE:
            if now >= self._handshake_deadline:
                self.close(CloseCode.HANDSHAKE_TIMEOUT, "the handshake did not finish in time")
            return
        if now - self._last_received >= self.peer_timeout_s:
            silent = now - self._last_received
            self.close(CloseCode.PEER_TIMEOUT, f"nothing heard for {silent:.1f} s")
            return
        if now - self._last_sent >= self.heartbeat_interval_s:
            self._send(bridge_pb2.Frame(heartbeat=self._heartbeat_body(now)), now)

    def connection_lost(self, reason: str) -> None:
        """The socket closed under us (without an `Error` frame)."""
        if self.state is not State.CLOSED:
            self.state = State.CLOSED
            self._events.append(
                Closed(CloseCode.CONNECTION_LOST, reason, fatal=False, by_peer=True)
            )

    def close(self, code: CloseCode, message: str) -> None:
        """End the connection, telling the peer why (and whether to come back)."""
        if self.state is State.CLOSED:
            return
        fatal = code in FATAL
        error = bridge_pb2.Error(code=code.value, message=message[:200], fatal=fatal)
        self._out.append(frames.encode(bridge_pb2.Frame(error=error)))
        self.state = State.CLOSED
        self._events.append(Closed(code, message, fatal=fatal, by_peer=False))

    # -- for the two ends ----------------------------------------------------------------
    def _handle(self, frame: bridge_pb2.Frame, now: float) -> None:
        raise NotImplementedError

    def _heartbeat_body(self, now: float) -> bridge_pb2.Heartbeat:
        heartbeat = bridge_pb2.Heartbeat()
        heartbeat.sent_at.FromMilliseconds(int(now * 1000))
        return heartbeat

    def _heartbeat(self, heartbeat: bridge_pb2.Heartbeat) -> None:
        oldest = (
            frames.millis(heartbeat.oldest_unsent, "oldest_unsent")
            if heartbeat.HasField("oldest_unsent")
            else None
        )
        self._events.append(
            HeartbeatReceived(
                frames.check_count(heartbeat.backlog_events, "backlog_events"),
                oldest,
                frames.check_count(heartbeat.thinned_points, "thinned_points"),
            )
        )

    def _send(self, frame: bridge_pb2.Frame, now: float) -> None:
        self._out.append(frames.encode(frame))
        self._last_sent = now

    def _send_raw(self, data: bytes, now: float) -> None:
        self._out.append(data)
        self._last_sent = now

    def _unexpected(self, frame: bridge_pb2.Frame) -> ProtocolError:
        kind = frame.WhichOneof("body")
        return ProtocolError(CloseCode.UNEXPECTED, f"a {kind} frame while {self.state.value}")

    def _peer_closed(self, error: bridge_pb2.Error) -> None:
        try:
            code = CloseCode(error.code)
        except ValueError:
            code = CloseCode.INTERNAL
        # Peer text ends up in logs: no control characters (a forged log line), bounded.
        message = frames.CONTROL.sub("?", error.message[: frames.MAX_TEXT])
        self.state = State.CLOSED
        self._events.append(Closed(code, message, fatal=error.fatal, by_peer=True))
