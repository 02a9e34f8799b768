"""The bridge protocol core: bytes in, frames and events out, no sockets, no clock."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import (
    Acked,
    BatchReceived,
    CloseCode,
    Closed,
    Dedup,
    EdgeConnection,
    HeartbeatReceived,
    HelloReceived,
    Opened,
    ProofReceived,
    RelayConnection,
    State,
    after_restart,
    frames,
    full_jitter,
)
from bellhop_bridge.backoff import RESTART_WINDOW_S
from bellhop_bridge.events import Lane
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

BULK, PRIORITY = bridge_pb2.LANE_BULK, bridge_pb2.LANE_PRIORITY
KEY = Ed25519PrivateKey.generate()


def edge(now: float = 0.0, *, key: Ed25519PrivateKey = KEY) -> EdgeConnection:
    return EdgeConnection(
        gateway_id="gw_1", hotel_id="lisbon-1", software_version="1.0", sign=key.sign, now=now
    )


def relay(now: float = 0.0, **kwargs: float) -> RelayConnection:
    settings: dict[str, float] = {"window_events": 4, "window_bytes": 10_000, **kwargs}
    return RelayConnection(
        now=now,
        nonce=os.urandom(32),
        window_events=int(settings.pop("window_events")),
        window_bytes=int(settings.pop("window_bytes")),
        **settings,
    )


def pump(
    a: EdgeConnection | RelayConnection, b: EdgeConnection | RelayConnection, now: float
) -> None:
    """Carry every frame each side has to send to the other, until both are quiet."""
    while True:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data in src.data_to_send():
                dst.receive_data(data, now)
                moved = True
        if not moved:
            return


def handshake(
    e: EdgeConnection, r: RelayConnection, last: Mapping[Lane, int] | None = None
) -> Opened:
    pump(e, r, 0.0)
    (hello,) = r.events_received()
    assert isinstance(hello, HelloReceived)
    assert (hello.gateway_id, hello.hotel_id, hello.protocol_version) == ("gw_1", "lisbon-1", 1)
    r.challenge(0.0)
    pump(e, r, 0.0)
    (proof,) = r.events_received()
    assert isinstance(proof, ProofReceived)
    KEY.public_key().verify(proof.signature, proof.message)  # the relay's check
    r.welcome(last or {}, 0.0)
    pump(e, r, 0.0)
    (opened,) = e.events_received()
    assert isinstance(opened, Opened)
    return opened


def event(lane: int, seq: int, value: float = 21.0) -> bytes:
    e = bridge_pb2.OutboxEvent(seq=seq, lane=lane)  # type: ignore[arg-type]
    e.telemetry.CopyFrom(common_pb2.TelemetryPoint(device_id="d", metric="t", value=value))
    return e.SerializeToString()


def test_a_gateway_proves_its_key_and_is_told_where_to_resume() -> None:
    e, r = edge(), relay()
    opened = handshake(e, r, {BULK: 40, PRIORITY: 7})
    assert opened.last_acked == {BULK: 40, PRIORITY: 7}
    assert (opened.window_events, opened.window_bytes) == (4, 10_000)
    assert e.state is State.OPEN
    assert r.state is State.OPEN


def test_a_proof_signed_with_another_key_does_not_verify() -> None:
    e, r = edge(key=Ed25519PrivateKey.generate()), relay()
    pump(e, r, 0.0)
    r.events_received()
    r.challenge(0.0)
    pump(e, r, 0.0)
    (proof,) = r.events_received()
    assert isinstance(proof, ProofReceived)
    with pytest.raises(InvalidSignature):
        KEY.public_key().verify(proof.signature, proof.message)
    r.close(CloseCode.BAD_PROOF, "the signature does not match")
    pump(e, r, 0.0)
    (closed,) = e.events_received()
    assert closed == Closed(CloseCode.BAD_PROOF, "the signature does not match", True, by_peer=True)


def test_events_flow_within_the_window_and_acks_free_it() -> None:
    e, r = edge(), relay(window_events=3)
    handshake(e, r)
    assert e.window_left() == (3, 10_000)
    e.send_events([(PRIORITY, 5, event(PRIORITY, 5)), (BULK, 1, event(BULK, 1))], 1.0)
    e.send_events([(BULK, 2, event(BULK, 2))], 1.0)
    assert e.window_left()[0] == 0
    with pytest.raises(ValueError, match="window"):
        e.send_events([(BULK, 3, event(BULK, 3))], 1.0)
    pump(e, r, 1.0)
    batches = r.events_received()
    received = [ev for b in batches if isinstance(b, BatchReceived) for ev in b.events]
    assert [(ev.lane, ev.seq) for ev in received] == [(PRIORITY, 5), (BULK, 1), (BULK, 2)]
    assert received[0].telemetry.value == 21.0
    r.ack(BULK, 2, 1.0)
    r.ack(PRIORITY, 5, 1.0)
    pump(e, r, 1.0)
    assert e.events_received() == [Acked(BULK, 2), Acked(PRIORITY, 5)]
    assert e.window_left()[0] == 3
    assert e.in_flight() == 0


def large_event(lane: int, seq: int, size: int) -> bytes:
    """A device event of about `size` bytes, as a state report with long values makes."""
    e = bridge_pb2.OutboxEvent(seq=seq, lane=lane)  # type: ignore[arg-type]
    e.device_event.device_id = "d"
    e.device_event.data.update({"note": "x" * size})
    return e.SerializeToString()


@given(size=st.integers(min_value=1, max_value=8_000), count=st.integers(1, 1000))
def test_a_batch_the_window_allows_is_always_a_frame_the_relay_takes(size: int, count: int) -> None:
    """Under a window wider than a frame, a full batch of large events still fits one frame."""
    e, r = edge(), relay(window_events=1000, window_bytes=8 << 20)
    handshake(e, r)
    left_events, left_bytes = e.window_left()
    assert left_bytes <= frames.MAX_BATCH_BYTES
    batch: list[tuple[Lane, int, bytes]] = []
    for seq in range(1, min(count, left_events) + 1):
        data = large_event(BULK, seq, size)
        if len(data) > left_bytes:
            break
        left_bytes -= len(data)
        batch.append((BULK, seq, data))
    e.send_events(batch, 1.0)
    (data,) = e.data_to_send()
    assert len(data) <= frames.MAX_FRAME_BYTES
    r.receive_data(data, 1.0)
    (received,) = r.events_received()
    assert isinstance(received, BatchReceived)
    assert len(received.events) == len(batch)


def test_batches_are_encoded_byte_for_byte_as_protobuf_would() -> None:
    datas = [event(BULK, i, value=i / 3) for i in range(1, 300)]
    frame = bridge_pb2.Frame()
    for data in datas:
        frame.events.events.add().ParseFromString(data)
    assert frames.encode_batch(datas) == frame.SerializeToString()


def test_a_lane_going_backwards_is_out_of_order() -> None:
    e, r = edge(), relay()
    handshake(e, r)
    forged = frames.encode_batch([event(BULK, 5), event(BULK, 4)])
    r.receive_data(forged, 1.0)
    (closed,) = [ev for ev in r.events_received() if isinstance(ev, Closed)]
    assert closed.code is CloseCode.OUT_OF_ORDER
    assert not closed.fatal


def test_a_gateway_past_its_window_is_closed() -> None:
    e, r = edge(), relay(window_events=2)
    handshake(e, r)
    r.receive_data(frames.encode_batch([event(BULK, s) for s in (1, 2, 3)]), 1.0)
    assert [ev.code for ev in r.events_received() if isinstance(ev, Closed)] == [
        CloseCode.WINDOW_EXCEEDED
    ]


def test_a_gateway_past_its_window_in_bytes_is_closed_and_acks_free_it() -> None:
    big = [large_event(BULK, seq, 3_000) for seq in (1, 2, 3, 4)]
    window = sum(len(b) for b in big[:3])
    e, r = edge(), relay(window_events=100, window_bytes=window)
    handshake(e, r)
    r.receive_data(frames.encode_batch(big[:3]), 1.0)  # exactly the window
    assert all(isinstance(ev, BatchReceived) for ev in r.events_received())
    r.ack(BULK, 1, 1.0)  # frees the first event's bytes
    r.receive_data(frames.encode_batch(big[3:]), 1.0)
    assert all(isinstance(ev, BatchReceived) for ev in r.events_received())
    r.receive_data(frames.encode_batch([large_event(BULK, 5, 10)]), 1.0)
    assert [ev.code for ev in r.events_received() if isinstance(ev, Closed)] == [
        CloseCode.WINDOW_EXCEEDED
    ]


def test_after_a_reconnect_the_relay_applies_what_it_lacks_once() -> None:
    dedup = Dedup({BULK: 0, PRIORITY: 0})
    first = [bridge_pb2.OutboxEvent.FromString(event(BULK, s)) for s in (1, 2, 3)]
    assert [ev.seq for ev in dedup.fresh(first)] == [1, 2, 3]
    # The ack was lost: the edge resends 2 and 3 after the reconnect, then 4.
    again = [bridge_pb2.OutboxEvent.FromString(event(BULK, s)) for s in (2, 3, 4)]
    assert [ev.seq for ev in dedup.fresh(again)] == [4]
    e, r = edge(), relay()
    handshake(e, r, {BULK: 3})
    with pytest.raises(ValueError, match="seq 3"):
        e.send_events([(BULK, 3, event(BULK, 3))], 1.0)


def test_heartbeats_go_both_ways_and_silence_is_a_dead_link() -> None:
    e, r = edge(), relay(heartbeat_interval_s=5)
    handshake(e, r)
    assert r.next_deadline() == 5.0
    e.backlog = (1200, 1_800_000_000_000, 30)
    e.tick(5.0)
    r.tick(5.0)
    pump(e, r, 5.0)
    assert HeartbeatReceived(1200, 1_800_000_000_000, 30) in r.events_received()
    assert any(isinstance(ev, HeartbeatReceived) for ev in e.events_received())
    # The relay hears nothing more (packets dropped without a FIN): 3 intervals later it gives up.
    r.tick(19.9)
    assert not r.closed
    r.tick(20.1)
    (closed,) = [ev for ev in r.events_received() if isinstance(ev, Closed)]
    assert closed.code is CloseCode.PEER_TIMEOUT


def test_an_unfinished_handshake_times_out() -> None:
    r = relay()
    r.tick(9.9)
    assert not r.closed
    r.tick(10.0)
    assert [ev.code for ev in r.events_received() if isinstance(ev, Closed)] == [
        CloseCode.HANDSHAKE_TIMEOUT
    ]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\xff\xff", CloseCode.BAD_FRAME),
        (b"", CloseCode.BAD_FRAME),
        (b"\x00" * (frames.MAX_FRAME_BYTES + 1), CloseCode.TOO_LARGE),
        (
            bridge_pb2.Frame(hello=bridge_pb2.Hello(protocol_version=2)).SerializeToString(),
            CloseCode.UNSUPPORTED_VERSION,
        ),
        (
            bridge_pb2.Frame(
                hello=bridge_pb2.Hello(protocol_version=1, gateway_id="g\x00", hotel_id="h")
            ).SerializeToString(),
            CloseCode.BAD_FRAME,
        ),
        (frames.encode_batch([event(BULK, 1)]), CloseCode.UNEXPECTED),
    ],
    ids=["garbage", "empty", "oversize", "version", "control-char", "events-before-hello"],
)
def test_bad_frames_close_with_a_named_reason(data: bytes, code: CloseCode) -> None:
    r = relay()
    r.receive_data(data, 0.0)
    (closed,) = r.events_received()
    assert isinstance(closed, Closed)
    assert closed.code is code
    (error_frame,) = r.data_to_send()
    assert bridge_pb2.Frame.FromString(error_frame).error.code == code.value
    r.receive_data(data, 0.1)  # nothing more happens once closed
    assert r.events_received() == []


def test_an_ack_of_something_never_sent_is_refused() -> None:
    e, r = edge(), relay()
    handshake(e, r)
    ack = bridge_pb2.Frame(ack=bridge_pb2.EventAck(seq=9, lane=BULK)).SerializeToString()
    e.receive_data(ack, 1.0)
    assert [ev.code for ev in e.events_received() if isinstance(ev, Closed)] == [
        CloseCode.BAD_FRAME
    ]


def test_full_jitter_stays_within_the_capped_exponential() -> None:
    delays = full_jitter(0.5, 8.0, rng=lambda: 1.0)
    assert [next(delays) for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    zero = full_jitter(0.5, 8.0, rng=lambda: 0.0)
    assert next(zero) == 0.0


def test_after_a_relay_restart_delays_stay_short_for_a_while_then_back_off_as_usual() -> None:
    delays = after_restart(1.0, 60.0, rng=lambda: 1.0)
    short = [next(delays) for _ in range(11)]
    assert short == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0, 15.0, 15.0, 15.0, 15.0]
    assert sum(short[:-1]) < RESTART_WINDOW_S <= sum(short)
    # Then the usual schedule, from its start, up to the usual cap.
    assert [next(delays) for _ in range(8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]


@given(st.binary(max_size=2048), st.sampled_from(["hello", "open"]))
def test_whatever_arrives_ends_in_events_never_in_an_exception(data: bytes, when: str) -> None:
    e, r = edge(), relay()
    if when == "open":
        handshake(e, r)
    for conn in (e, r):
        conn.receive_data(data, 1.0)
        for ev in conn.events_received():
            assert not isinstance(ev, Closed) or ev.code in CloseCode
        conn.data_to_send()


def test_numbers_and_times_past_what_a_database_holds_are_refused() -> None:
    # uint64 on the wire, signed 64-bit in both ends' databases; times outside years 1-9999.
    e, r = edge(), relay()
    handshake(e, r)
    r.receive_data(frames.encode_batch([event(BULK, 2**63)]), 1.0)
    (closed,) = [ev for ev in r.events_received() if isinstance(ev, Closed)]
    assert (closed.code, closed.message) == (CloseCode.BAD_FRAME, "seq is past 2^63-1")
    for peer in (edge(), relay()):
        other = relay() if isinstance(peer, EdgeConnection) else edge()
        pair = (peer, other) if isinstance(peer, EdgeConnection) else (other, peer)
        handshake(*pair)
        beat = bridge_pb2.Heartbeat()
        beat.oldest_unsent.seconds = 10**12
        peer.receive_data(frames.encode(bridge_pb2.Frame(heartbeat=beat)), 1.0)
        (closed,) = [ev for ev in peer.events_received() if isinstance(ev, Closed)]
        assert closed.code is CloseCode.BAD_FRAME
        assert "oldest_unsent" in closed.message


def test_a_peers_close_message_reaches_the_log_without_control_characters() -> None:
    e = edge()
    error = bridge_pb2.Error(
        code="internal", message="bye\nINFO forged line\x1b[2J\x85", fatal=False
    )
    e.receive_data(frames.encode(bridge_pb2.Frame(error=error)), 0.0)
    (closed,) = e.events_received()
    assert isinstance(closed, Closed)
    assert closed.message == "bye?INFO forged line?[2J?"
