"""The gateway's end of a bridge: prove who it is, then stream its outbox.

    conn = EdgeConnection(gateway_id=..., hotel_id=..., sign=key.sign, now=t)
    ... Opened(last_acked, window): read each lane's outbox after last_acked ...
    conn.send_events([(lane, seq, serialized_event), ...])   # within window_left()
    ... Acked(lane, seq): the relay stored that lane through seq ...

Two lanes, each in sequence order: alarms and alert changes (priority) go
before a telemetry backlog (bulk). Events sent and not yet acknowledged are
bounded by the window the relay gave in `Welcome`, in events and in bytes.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Final

from bellhop.bridge.v1 import bridge_pb2

from bellhop_bridge import frames
from bellhop_bridge.connection import MAX_HEARTBEAT_S, MIN_HEARTBEAT_S, Connection, State
from bellhop_bridge.errors import CloseCode, ProtocolError
from bellhop_bridge.events import (
    Acked,
    AlertAcknowledged,
    CommandReceived,
    DesiredChangeReceived,
    Lane,
    Opened,
    SnapshotRequested,
)

__all__ = ["LANES", "EdgeConnection"]

LANES: Final = (bridge_pb2.LANE_PRIORITY, bridge_pb2.LANE_BULK)
# A peer's timeout is this many of its heartbeat intervals (docs/bridge.md).
TIMEOUT_INTERVALS: Final = 3
MAX_WINDOW_EVENTS: Final = 100_000
MAX_WINDOW_BYTES: Final = 64 << 20


class EdgeConnection(Connection):
    """One connection of a gateway to the relay, from Hello to close."""

    def __init__(
        self,
        *,
        gateway_id: str,
        hotel_id: str,
        software_version: str,
        sign: Callable[[bytes], bytes],
        now: float,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        # Until Welcome names the interval, the handshake deadline governs.
        super().__init__(
            now=now,
            handshake_timeout_s=handshake_timeout_s,
            heartbeat_interval_s=MAX_HEARTBEAT_S,
            peer_timeout_s=MAX_HEARTBEAT_S * TIMEOUT_INTERVALS,
        )
        self.gateway_id = gateway_id
        self._sign = sign
        self._challenged = False
        self._window_events = 0
        self._window_bytes = 0
        # Per lane: (seq, size) of each event sent and not yet acknowledged.
        self._in_flight: dict[Lane, collections.deque[tuple[int, int]]] = {
            lane: collections.deque() for lane in LANES
        }
        self._flight_bytes = 0
        self._last_sent_seq: dict[Lane, int] = dict.fromkeys(LANES, 0)
        # What the heartbeats report: events to send, the oldest one's time (ms), points thinned.
        self.backlog: tuple[int, int | None, int] = (0, None, 0)
        hello = bridge_pb2.Hello(
            protocol_version=frames.PROTOCOL_VERSION,
            gateway_id=gateway_id,
            hotel_id=hotel_id,
            software_version=software_version,
        )
        self._send(bridge_pb2.Frame(hello=hello), now)

    # -- sending events ----------------------------------------------------------------
    def window_left(self) -> tuple[int, int]:
        """How many more events, and bytes of them, the next batch may carry.

        Bounded by the relay's window and by what one frame can hold, so that a
        batch of large events is never a frame the relay must refuse.
        """
        if self.state is not State.OPEN:
            return 0, 0
        events = sum(len(d) for d in self._in_flight.values())
        left_bytes = min(self._window_bytes - self._flight_bytes, frames.MAX_BATCH_BYTES)
        return min(self._window_events - events, frames.MAX_BATCH_EVENTS), left_bytes

    def in_flight(self) -> int:
        return sum(len(d) for d in self._in_flight.values())

    def send_events(self, events: Sequence[tuple[Lane, int, bytes]], now: float) -> None:
        """Send serialized `OutboxEvent`s (each lane in rising seq order) in one frame.

        The caller sizes the batch with `window_left()`; going past it is a bug.
        """
        if self.state is not State.OPEN:
            raise RuntimeError("the bridge is not open")
        if not events:
            return
        left_events, left_bytes = self.window_left()
        size = sum(len(data) for _, _, data in events)
        if len(events) > min(left_events, frames.MAX_BATCH_EVENTS) or size > left_bytes:
            raise ValueError("the batch does not fit the window")
        for lane, seq, data in events:
            if seq <= self._last_sent_seq[lane]:
                raise ValueError(f"lane {lane}: seq {seq} after {self._last_sent_seq[lane]}")
            self._last_sent_seq[lane] = seq
            self._in_flight[lane].append((seq, len(data)))
        self._flight_bytes += size
        self._send_raw(frames.encode_batch(data for _, _, data in events), now)

    def send_command_result(self, result: bridge_pb2.RemoteCommandResult, now: float) -> None:
        self._send(bridge_pb2.Frame(command_result=result), now)

    def send_snapshot(self, snapshot: bridge_pb2.Snapshot, now: float) -> None:
        self._send(bridge_pb2.Frame(snapshot=snapshot), now)

    # -- receiving ------------------------------------------------------------------------
    def _handle(self, frame: bridge_pb2.Frame, now: float) -> None:
        body = frame.WhichOneof("body")
        if self.state is State.HANDSHAKE:
            if body == "challenge" and not self._challenged:
                self._answer(frame.challenge, now)
            elif body == "welcome" and self._challenged:
                self._open(frame.welcome)
            else:
                raise self._unexpected(frame)
        elif body == "ack":
            self._acked(frame.ack)
        elif body == "command":
            self._events.append(CommandReceived(frame.command))
        elif body == "alert_acknowledgement":
            self._events.append(AlertAcknowledged(frame.alert_acknowledgement))
        elif body == "desired_change":
            self._events.append(DesiredChangeReceived(frame.desired_change))
        elif body == "snapshot_request":
            request_id = frames.check_text(frame.snapshot_request.request_id, "request_id")
            self._events.append(SnapshotRequested(request_id))
        else:
            raise self._unexpected(frame)

    def _answer(self, challenge: bridge_pb2.Challenge, now: float) -> None:
        if len(challenge.nonce) != frames.NONCE_BYTES:
            raise ProtocolError(CloseCode.BAD_FRAME, "a challenge nonce of the wrong size")
        self._challenged = True
        signature = self._sign(frames.proof_message(self.gateway_id, challenge.nonce))
        self._send(bridge_pb2.Frame(proof=bridge_pb2.Proof(signature=signature)), now)

    def _open(self, welcome: bridge_pb2.Welcome) -> None:
        interval = float(welcome.heartbeat_interval_s)
        if welcome.heartbeat_interval_ms:
            interval = welcome.heartbeat_interval_ms / 1000
        if not MIN_HEARTBEAT_S <= interval <= MAX_HEARTBEAT_S:
            raise ProtocolError(CloseCode.BAD_FRAME, f"a heartbeat interval of {interval} s")
        if not 0 < welcome.window_events <= MAX_WINDOW_EVENTS:
            raise ProtocolError(CloseCode.BAD_FRAME, "a window of no events")
        if not 0 < welcome.window_bytes <= MAX_WINDOW_BYTES:
            raise ProtocolError(CloseCode.BAD_FRAME, "a window of no bytes")
        self.heartbeat_interval_s = interval
        self.peer_timeout_s = interval * TIMEOUT_INTERVALS
        self._window_events = welcome.window_events
        self._window_bytes = welcome.window_bytes
        self.state = State.OPEN
        acked: dict[Lane, int] = {
            int(bridge_pb2.LANE_BULK): frames.check_count(welcome.last_acked_seq, "last_acked"),
            int(bridge_pb2.LANE_PRIORITY): frames.check_count(
                welcome.last_acked_priority_seq, "last_acked_priority"
            ),
        }
        # Events are sent after what the relay has; a lower seq is never resent.
        self._last_sent_seq = dict(acked)
        trust = welcome.token_trust if welcome.HasField("token_trust") else None
        self._events.append(
            Opened(acked, interval, welcome.window_events, welcome.window_bytes, trust)
        )

    def _acked(self, ack: bridge_pb2.EventAck) -> None:
        if ack.lane not in self._in_flight:
            raise ProtocolError(CloseCode.BAD_FRAME, f"an ack on unknown lane {ack.lane}")
        if ack.seq > self._last_sent_seq[ack.lane]:
            raise ProtocolError(CloseCode.BAD_FRAME, f"an ack of seq {ack.seq}, never sent")
        flight = self._in_flight[ack.lane]
        while flight and flight[0][0] <= ack.seq:
            self._flight_bytes -= flight.popleft()[1]
        self._events.append(Acked(ack.lane, ack.seq))

    def _heartbeat_body(self, now: float) -> bridge_pb2.Heartbeat:
        heartbeat = super()._heartbeat_body(now)
        events, oldest_ms, thinned = self.backlog
        heartbeat.backlog_events = events
        heartbeat.thinned_points = thinned
        if oldest_ms is not None:
            heartbeat.oldest_unsent.FromMilliseconds(oldest_ms)
        return heartbeat
