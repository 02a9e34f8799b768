"""The relay's end of a bridge: check who the gateway is, then take its events.

    conn = RelayConnection(now=t, nonce=os.urandom(32), window_events=..., window_bytes=...)
    HelloReceived(gateway_id, hotel_id, ...)  -> conn.challenge() or conn.close(UNKNOWN_GATEWAY)
    ProofReceived(message, signature)         -> conn.welcome(last_acked) or conn.close(BAD_PROOF)
    BatchReceived(events)                     -> apply `Dedup.fresh(...)` in one transaction,
                                                 then conn.ack(lane, dedup.highest[lane])
                                                 for each lane the batch holds

Within a connection each lane's sequence only rises and the gateway keeps
within its window; a gateway that breaks either is closed. Across
connections the edge resends what was not acknowledged, which `Dedup`
recognises by each lane's last applied sequence.
"""

from __future__ import annotations

import collections
import operator
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Final

from bellhop.bridge.v1 import bridge_pb2

from bellhop_bridge import frames
from bellhop_bridge.connection import Connection, State
from bellhop_bridge.edge import LANES, TIMEOUT_INTERVALS
from bellhop_bridge.errors import CloseCode, ProtocolError
from bellhop_bridge.events import (
    BatchReceived,
    CommandResultReceived,
    HelloReceived,
    Lane,
    ProofReceived,
    SnapshotReceived,
)

__all__ = ["Dedup", "RelayConnection"]

ID_MAX: Final = 64

# Read off every event of a batch in one pass each (C loops, not Python ones).
_SEQ: Final = operator.attrgetter("seq")
_LANE: Final = operator.attrgetter("lane")
_PAYLOAD: Final = operator.methodcaller("WhichOneof", "payload")
_SIZE: Final = operator.methodcaller("ByteSize")


def _rising(seqs: list[int]) -> bool:
    """Each sequence above the one before it."""
    return all(map(operator.lt, seqs, islice(seqs, 1, None)))


class _Run:
    """Events of one lane that arrived together and are not all acknowledged yet:
    their sequences, their sizes, and from where on they are still pending."""

    __slots__ = ("bytes", "seqs", "sizes", "start")

    def __init__(self, seqs: list[int], sizes: list[int]) -> None:
        self.seqs = seqs
        self.sizes = sizes
        self.start = 0
        self.bytes = sum(sizes)


class RelayConnection(Connection):
    """One gateway's connection, from its Hello to close."""

    def __init__(
        self,
        *,
        now: float,
        nonce: bytes,
        window_events: int,
        window_bytes: int,
        heartbeat_interval_s: float = 15.0,
        handshake_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            now=now,
            handshake_timeout_s=handshake_timeout_s,
            heartbeat_interval_s=heartbeat_interval_s,
            peer_timeout_s=heartbeat_interval_s * TIMEOUT_INTERVALS,
        )
        if len(nonce) != frames.NONCE_BYTES:
            raise ValueError(f"the nonce must be {frames.NONCE_BYTES} bytes")
        self._nonce = nonce
        self._window_events = window_events
        self._window_bytes = window_bytes
        self.gateway_id: str | None = None
        self.hotel_id: str | None = None
        self._step = "hello"  # hello -> challenged -> proved (then OPEN)
        self._received: dict[Lane, int] = dict.fromkeys(LANES, 0)
        self._acked: dict[Lane, int] = dict.fromkeys(LANES, 0)
        # Per lane: the events received and not yet acknowledged (the window's count),
        # in runs as they arrived, oldest first.
        self._pending: dict[Lane, collections.deque[_Run]] = {
            lane: collections.deque() for lane in LANES
        }
        self._pending_events = 0
        self._pending_bytes = 0
        self._data = b""  # the frame being handled, as it came

    # -- the driver's answers ------------------------------------------------------------
    def challenge(self, now: float) -> None:
        """The gateway is known: ask it to prove it holds its enrolment key."""
        self._expect_step("hello_checked")
        self._step = "challenged"
        self._send(bridge_pb2.Frame(challenge=bridge_pb2.Challenge(nonce=self._nonce)), now)

    def welcome(
        self,
        last_acked: Mapping[Lane, int],
        now: float,
        *,
        token_trust: bridge_pb2.TokenTrust | None = None,
    ) -> None:
        """The proof holds: open, and tell the gateway where each lane resumes (and,
        with `token_trust`, how to verify the relay's access tokens on its LAN API)."""
        self._expect_step("proved")
        self.state = State.OPEN
        self._received = {lane: last_acked.get(lane, 0) for lane in LANES}
        self._acked = dict(self._received)
        welcome = bridge_pb2.Welcome(
            last_acked_seq=self._acked[bridge_pb2.LANE_BULK],
            last_acked_priority_seq=self._acked[bridge_pb2.LANE_PRIORITY],
            heartbeat_interval_s=max(1, round(self.heartbeat_interval_s)),
            heartbeat_interval_ms=round(self.heartbeat_interval_s * 1000),
            window_events=self._window_events,
            window_bytes=self._window_bytes,
        )
        if token_trust is not None:
            welcome.token_trust.CopyFrom(token_trust)
        self._send(bridge_pb2.Frame(welcome=welcome), now)

    def ack(self, lane: Lane, seq: int, now: float) -> None:
        """Everything of `lane` through `seq` is stored (committed)."""
        if self.state is not State.OPEN or seq <= self._acked[lane]:
            return
        if seq > self._received[lane]:
            raise ValueError(f"ack of seq {seq} on lane {lane}, received {self._received[lane]}")
        pending = self._pending[lane]
        while pending:
            run = pending[0]
            if run.seqs[-1] <= seq:  # the whole run
                pending.popleft()
                self._pending_events -= len(run.seqs) - run.start
                self._pending_bytes -= run.bytes
                continue
            end = bisect_right(run.seqs, seq, run.start)
            freed = sum(islice(run.sizes, run.start, end))
            self._pending_events -= end - run.start
            self._pending_bytes -= freed
            run.bytes -= freed
            run.start = end
            break
        self._acked[lane] = seq
        ack = bridge_pb2.EventAck(seq=seq, lane=bridge_pb2.Lane.ValueType(lane))
        self._send(bridge_pb2.Frame(ack=ack), now)

    def send_command(self, command: bridge_pb2.RemoteCommand, now: float) -> None:
        self._send(bridge_pb2.Frame(command=command), now)

    def acknowledge_alert(self, ack: bridge_pb2.AlertAcknowledgement, now: float) -> None:
        self._send(bridge_pb2.Frame(alert_acknowledgement=ack), now)

    def change_desired(self, change: bridge_pb2.DesiredStateChange, now: float) -> None:
        self._send(bridge_pb2.Frame(desired_change=change), now)

    def request_snapshot(self, request_id: str, now: float) -> None:
        request = bridge_pb2.SnapshotRequest(request_id=request_id)
        self._send(bridge_pb2.Frame(snapshot_request=request), now)

    # -- receiving ------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        self._data = data  # a batch's events are sized as they came (`frames.event_sizes`)
        try:
            super().receive_data(data, now)
        finally:
            self._data = b""

    def _handle(self, frame: bridge_pb2.Frame, now: float) -> None:
        body = frame.WhichOneof("body")
        if self.state is State.HANDSHAKE:
            if body == "hello" and self._step == "hello":
                self._hello(frame.hello)
            elif body == "proof" and self._step == "challenged":
                self._step = "proved"
                message = frames.proof_message(self.gateway_id or "", self._nonce)
                self._events.append(ProofReceived(message, frame.proof.signature))
            else:
                raise self._unexpected(frame)
        elif body == "events":
            self._batch(frame.events.events)
        elif body == "command_result":
            self._events.append(CommandResultReceived(frame.command_result))
        elif body == "snapshot":
            self._events.append(SnapshotReceived(frame.snapshot))
        else:
            raise self._unexpected(frame)

    def _hello(self, hello: bridge_pb2.Hello) -> None:
        if hello.protocol_version != frames.PROTOCOL_VERSION:
            raise ProtocolError(
                CloseCode.UNSUPPORTED_VERSION,
                f"protocol version {hello.protocol_version}; this relay speaks"
                f" {frames.PROTOCOL_VERSION}",
            )
        self.gateway_id = frames.check_text(hello.gateway_id, "gateway_id", max_len=ID_MAX)
        self.hotel_id = frames.check_text(hello.hotel_id, "hotel_id", max_len=ID_MAX)
        software = frames.check_text(hello.software_version, "software_version", required=False)
        self._step = "hello_checked"
        self._events.append(
            HelloReceived(self.gateway_id, self.hotel_id, hello.protocol_version, software)
        )

    def _batch(self, batch: Iterable[bridge_pb2.OutboxEvent]) -> None:
        events = list(batch)
        # Each event's size as the gateway counted it; serialized again only for a frame
        # whose events could not be told apart that way.
        sizes = frames.event_sizes(self._data) if self._data else []
        if len(sizes) != len(events):
            sizes = list(map(_SIZE, events))
        runs = self._runs(events, sizes)
        if runs is None:  # some rule is broken: find the first event that breaks one
            runs = self._check_each(events, sizes)
        for lane, (seqs, sizes) in runs.items():
            if seqs:
                run = _Run(seqs, sizes)
                self._received[lane] = seqs[-1]
                self._pending[lane].append(run)
                self._pending_events += len(seqs)
                self._pending_bytes += run.bytes
        if self._pending_events > self._window_events:
            raise ProtocolError(
                CloseCode.WINDOW_EXCEEDED,
                f"{self._pending_events} events sent and not acknowledged",
            )
        if self._pending_bytes > self._window_bytes:
            raise ProtocolError(
                CloseCode.WINDOW_EXCEEDED,
                f"{self._pending_bytes} bytes of events sent and not acknowledged",
            )
        self._events.append(BatchReceived(events))

    def _runs(
        self, events: list[bridge_pb2.OutboxEvent], sizes: list[int]
    ) -> dict[Lane, tuple[list[int], list[int]]] | None:
        """Per lane, the batch's sequences and event sizes; None if any event breaks a
        rule (`_check_each` then says which). The rules, for a whole batch at once: a
        known lane, each lane's sequences rising from past what it received, none past
        what a database holds, and every event carrying something."""
        seqs = list(map(_SEQ, events))
        lanes = list(map(_LANE, events))
        if None in map(_PAYLOAD, events):
            return None
        if not seqs:
            return {}
        first = lanes[0]
        if lanes.count(first) == len(lanes):  # one lane, as nearly every batch
            runs = {first: (seqs, sizes)}
        else:
            runs = {
                lane: (
                    [s for s, at in zip(seqs, lanes, strict=True) if at == lane],
                    [n for n, at in zip(sizes, lanes, strict=True) if at == lane],
                )
                for lane in set(lanes)
            }
        for lane, (run, _) in runs.items():
            received = self._received.get(lane)
            if (
                received is None
                or run[0] <= received
                or not _rising(run)
                or run[-1] > frames.MAX_COUNT
            ):
                return None
        return runs

    def _check_each(
        self, events: list[bridge_pb2.OutboxEvent], sizes: list[int]
    ) -> dict[Lane, tuple[list[int], list[int]]]:
        """Event by event, raising for the first that breaks a rule."""
        received = dict(self._received)
        runs: dict[Lane, tuple[list[int], list[int]]] = {}
        for event, size in zip(events, sizes, strict=True):
            lane = event.lane
            if lane not in received:
                raise ProtocolError(CloseCode.BAD_FRAME, f"an event on unknown lane {lane}")
            frames.check_count(event.seq, "seq")
            if event.seq <= received[lane]:
                raise ProtocolError(
                    CloseCode.OUT_OF_ORDER,
                    f"lane {lane}: seq {event.seq} after {received[lane]}",
                )
            if event.WhichOneof("payload") is None:
                raise ProtocolError(CloseCode.BAD_FRAME, f"event {event.seq} carries nothing")
            received[lane] = event.seq
            lane_seqs, lane_sizes = runs.setdefault(lane, ([], []))
            lane_seqs.append(event.seq)
            lane_sizes.append(size)
        return runs

    def _expect_step(self, step: str) -> None:
        if self.state is not State.HANDSHAKE or self._step != step:
            raise RuntimeError(f"not at the {step} step of the handshake")


@dataclass(slots=True)
class Dedup:
    """Which events of a batch are new, by each lane's last applied sequence.

    The relay keeps `last_applied` in the same transaction as what it
    applies, so a batch sent again after a reconnect (or a crash of either
    end) is applied once. `highest`: each lane's highest sequence among the
    events given, new or not (what to acknowledge once they are stored).
    """

    last_applied: dict[Lane, int]
    highest: dict[Lane, int] = field(default_factory=dict)

    def fresh(self, events: Iterable[bridge_pb2.OutboxEvent]) -> list[bridge_pb2.OutboxEvent]:
        events = list(events)
        seqs = list(map(_SEQ, events))
        lanes = list(map(_LANE, events))
        if seqs and lanes.count(lanes[0]) == len(lanes):
            # One lane: all new or none, as nearly always, without a look at each.
            lane, top = lanes[0], max(seqs)
            self.highest[lane] = max(self.highest.get(lane, top), top)
            last = self.last_applied.get(lane, 0)
            if top <= last:
                return []
            if seqs[0] > last and _rising(seqs):
                self.last_applied[lane] = top
                return events
        out = []
        for event, seq, lane in zip(events, seqs, lanes, strict=True):
            if seq > self.highest.get(lane, -1):
                self.highest[lane] = seq
            if seq > self.last_applied.get(lane, 0):
                self.last_applied[lane] = seq
                out.append(event)
        return out
