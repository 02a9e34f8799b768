"""Property: whatever arrives on the relay's bridge port, the relay ends the connection
with a named reason and keeps serving.

Hypothesis sends `bellhop cloud run`, a real process on SQLite, WebSocket
messages of every sort: random bytes, text frames, valid frames damaged
(bytes flipped, cut, inserted), frames carrying fields this version does not
know, Hellos of other protocol versions, frames out of place; on fresh
connections, and after a real handshake of an enrolled gateway (its own
Ed25519 key): batches of random events (ids, numbers, timestamps and strings
at and past every limit), heartbeats, snapshots. Messages at and past the
size limit, and a client that says nothing, are cases of their own.

Every connection must end, within a bound, with an `Error` frame naming a
`CloseCode` (or a WebSocket close: 1009 for a message past the size limit,
a normal close after the client's own `Error`), never a hang and never the
server's "internal error" close (1011) of a connection handler that failed.
Afterwards the relay is alive, serves a well-behaved gateway and the REST
API, and has logged no traceback.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import MAX_FRAME_BYTES, PROTOCOL_VERSION, CloseCode, ProtocolError, frames
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode as WsClose
from websockets.sync.client import ClientConnection, connect

from tests.support.relay_process import RelayProcess, Tenant, bytecode_cache

CODES: Final = frozenset(code.value for code in CloseCode)
# The relay answers within milliseconds; this bound only tells a hang from an answer.
END_WITHIN_S: Final = 10.0
HANDSHAKE_TIMEOUT_S: Final = 1.0
WINDOW_EVENTS: Final = 100
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1
FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Enrolled:
    gateway_id: str
    hotel_id: str
    key: Ed25519PrivateKey


@dataclass(frozen=True)
class Target:
    relay: RelayProcess
    fuzzed: Enrolled  # the gateway whose connections get the random frames
    fuzzed_tenant: Tenant
    good: Enrolled  # another hotel's gateway, well-behaved, checked at the end
    good_tenant: Tenant

    def new_gateway(self) -> Enrolled:
        """A gateway that has never connected, of a hotel of its own: each example (and
        each step of shrinking one) starts from the same state, lanes at 0 and no rows."""
        return _enrolled(self.fuzzed_tenant.another_hotel(), "fuzzed")


def _enrolled(tenant: Tenant, name: str) -> Enrolled:
    key = Ed25519PrivateKey.generate()
    gateway = tenant.enrol(key, name)
    return Enrolled(str(gateway["id"]), tenant.hotel_id, key)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        bytecode_cache(tmp_path_factory, monkeypatch)
        # The relay takes its environment now, at construction, for all its starts.
        relay = RelayProcess(
            tmp_path_factory.mktemp("bridge-fuzz"),
            settings={
                # Short, so that a connection left mid-handshake ends soon.
                "bridge_handshake_timeout_s": HANDSHAKE_TIMEOUT_S,
                # Small, so that random batches also go past it.
                "bridge_window_events": WINDOW_EVENTS,
            },
        )
    try:
        relay.start()
        fuzzed_tenant, good_tenant = relay.tenant("fuzzed"), relay.tenant("good")
        yield Target(
            relay,
            _enrolled(fuzzed_tenant, "fuzzed"),
            fuzzed_tenant,
            _enrolled(good_tenant, "good"),
            good_tenant,
        )
    finally:
        relay.close()


# -- one connection ---------------------------------------------------------------------------
@dataclass
class Ending:
    """How the relay ended a connection."""

    frames: list[str]  # the bodies of the frames it sent, in order
    errors: list[bridge_pb2.Error]
    close_code: int | None


def _connect(target: Target) -> ClientConnection:
    return connect(
        target.relay.bridge_url,
        open_timeout=10,
        close_timeout=5,
        compression=None,
        proxy=None,
        max_size=None,  # what the relay sends is checked below, whatever its size
    )


def _recv_frame(ws: ClientConnection, deadline: float) -> bridge_pb2.Frame:
    data = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
    assert isinstance(data, bytes), "the relay sent a text frame"
    return frames.decode(data)  # what the relay sends obeys the protocol's own limits


def _ending(ws: ClientConnection) -> Ending:
    """Read until the relay closes; AssertionError if it neither closes nor answers in time."""
    deadline = time.monotonic() + END_WITHIN_S
    ending = Ending([], [], None)
    while True:
        try:
            frame = _recv_frame(ws, deadline)
        except TimeoutError:
            raise AssertionError(f"a hang: no end after {END_WITHIN_S} s, {ending}") from None
        except ConnectionClosed as exc:
            ending.close_code = exc.rcvd.code if exc.rcvd is not None else None
            return ending
        body = frame.WhichOneof("body")
        assert body is not None
        ending.frames.append(body)
        if body == "error":
            ending.errors.append(frame.error)


def _handshake(ws: ClientConnection, who: Enrolled) -> bridge_pb2.Welcome:
    """A real gateway's handshake: Hello, the proof over the relay's nonce; the Welcome."""
    hello = bridge_pb2.Hello(
        protocol_version=PROTOCOL_VERSION,
        gateway_id=who.gateway_id,
        hotel_id=who.hotel_id,
        software_version="fuzz",
    )
    ws.send(frames.encode(bridge_pb2.Frame(hello=hello)))
    deadline = time.monotonic() + END_WITHIN_S
    challenge = _recv_frame(ws, deadline)
    assert challenge.WhichOneof("body") == "challenge", challenge
    signature = who.key.sign(frames.proof_message(who.gateway_id, challenge.challenge.nonce))
    ws.send(frames.encode(bridge_pb2.Frame(proof=bridge_pb2.Proof(signature=signature))))
    welcome = _recv_frame(ws, deadline)
    assert welcome.WhichOneof("body") == "welcome", welcome
    return welcome.welcome


def _send_all(ws: ClientConnection, messages: list[bytes | str]) -> None:
    """Send each message; then, to a relay still listening, a text frame (refused in every
    state), so that the relay always has a reason to end the connection."""
    try:
        for message in messages:
            ws.send(message)
        ws.send("that was all")
    except ConnectionClosed:
        pass  # the relay ended it already; `_ending` reads why


def _check(ending: Ending, messages: list[bytes | str], target: Target) -> None:
    assert ending.close_code != WsClose.INTERNAL_ERROR, (
        f"the relay's connection handler failed (close 1011); the last traceback it logged:\n"
        f"{_traceback(target)}"
    )
    if ending.errors:
        assert len(ending.errors) == 1, ending
        assert ending.errors[0].code in CODES, ending
        assert ending.frames[-1] == "error", f"frames after the Error: {ending}"
        return
    # No Error frame: only a message past the size limit (the WebSocket layer refuses
    # it first) or the client's own Error frame (the relay has nothing to add) ends so.
    oversize = any(len(m) > MAX_FRAME_BYTES for m in messages if isinstance(m, bytes))
    if oversize:
        assert ending.close_code == WsClose.MESSAGE_TOO_BIG, ending
        return
    assert any(_is_error_frame(m) for m in messages), f"closed without a reason: {ending}"


def _is_error_frame(message: bytes | str) -> bool:
    if isinstance(message, str):
        return False
    try:
        return frames.decode(message).HasField("error")
    except ProtocolError:  # garbage is simply not an Error frame
        return False


def _traceback(target: Target) -> str:
    log = target.relay.log.read_text(errors="replace")
    at = log.rfind("Traceback")
    return log[at : at + 3000] if at >= 0 else "(not logged yet)"


# -- what a fuzzer sends -------------------------------------------------------------------------
ids = st.one_of(
    st.sampled_from(["r101-env", "101", "r101-door", "a" * 64, "a" * 65, ""]),
    st.text(max_size=70),
    st.text(alphabet="ab \x00\n\x7f/é", max_size=10),
)
texts = st.one_of(st.text(max_size=80), st.text(min_size=190, max_size=600))
floats = st.floats(allow_nan=True, allow_infinity=True)
uint64 = st.one_of(st.integers(0, 1000), st.sampled_from([INT64_MAX, INT64_MAX + 1, UINT64_MAX]))
int32 = st.integers(-(2**31), 2**31 - 1)
enums = st.integers(-2, 20)
# (seconds, nanos): plausible times, and every edge of the Timestamp's range and past it.
timestamps = st.one_of(
    st.tuples(st.integers(0, 4_102_444_800), st.integers(0, 999_999_999)),
    st.tuples(
        st.sampled_from([-62_135_596_801, -1, 253_402_300_800, 2**62, -(2**63), INT64_MAX]),
        int32,
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | floats | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
structs = st.dictionaries(st.text(max_size=20), json_values, max_size=6)


def _stamp(message: Any, field: str, value: tuple[int, int] | None) -> None:
    if value is None:
        return
    stamp = getattr(message, field)
    try:
        stamp.seconds, stamp.nanos = value
    except ValueError:
        message.ClearField(field)


def _struct(target: struct_pb2.Struct, values: dict[str, Any]) -> None:
    try:
        target.update(values)
    except (ValueError, TypeError):
        target.Clear()


def _enum(message: Any, field: str, value: int) -> None:
    with contextlib.suppress(ValueError):  # a value the field cannot hold is left out
        setattr(message, field, value)


@st.composite
def payloads(draw: st.DrawFn, event: bridge_pb2.OutboxEvent, *, empty: bool) -> None:
    """Fill one event's payload (`empty`: or not) with values at and past the limits."""
    kinds = ["telemetry", "state", "device_event", "alert", "command_result", "device", "room"]
    kind = draw(st.sampled_from([*kinds, "gap", *([None] if empty else [])]))
    if kind == "telemetry":
        point = event.telemetry
        point.device_id, point.metric = (
            draw(ids),
            draw(st.sampled_from(["humidity", "Bad", ""]) | ids),
        )
        point.value = draw(floats)
        _stamp(point, "ts", draw(timestamps))
    elif kind == "state":
        event.state.device_id = draw(ids)
        _struct(event.state.values, draw(structs))
        _stamp(event.state, "updated_at", draw(timestamps))
    elif kind == "device_event":
        device_event = event.device_event
        device_event.device_id = draw(ids)
        _enum(device_event, "kind", draw(enums))
        _stamp(device_event, "ts", draw(timestamps))
        _struct(device_event.data, draw(structs))
    elif kind == "alert":
        _alert(draw, event.alert)
    elif kind == "command_result":
        result = event.command_result
        result.command_id, result.device_id, result.error = draw(ids), draw(ids), draw(texts)
        _enum(result, "status", draw(enums))
        _struct(result.result, draw(structs))
        _stamp(result, "completed_at", draw(st.none() | timestamps))
    elif kind == "device":
        _device(draw, event.device)
    elif kind == "room":
        event.room.room_id, event.room.name = draw(ids), draw(texts)
        event.room.floor = draw(int32)
    elif kind == "gap":
        gap = event.gap
        gap.first_seq, gap.last_seq = draw(uint64), draw(uint64)
        gap.telemetry_points, gap.other_events = draw(uint64), draw(uint64)
        _stamp(gap, "oldest", draw(st.none() | timestamps))
        gap.reason = draw(texts)


def _alert(draw: st.DrawFn, alert: common_pb2.Alert) -> None:
    alert.alert_id, alert.device_id, alert.room_id = draw(ids), draw(ids), draw(ids)
    alert.message, alert.note, alert.acknowledged_by = draw(texts), draw(texts), draw(texts)
    for field in ("kind", "severity", "state"):
        _enum(alert, field, draw(enums))
    _stamp(alert, "raised_at", draw(timestamps))
    _stamp(alert, "cleared_at", draw(st.none() | timestamps))


def _device(draw: st.DrawFn, device: common_pb2.Device) -> None:
    device.device_id, device.room_id, device.firmware = draw(ids), draw(ids), draw(texts)
    device.registered = draw(st.booleans())
    _enum(device, "kind", draw(enums))
    _enum(device, "connectivity", draw(enums))
    _stamp(device, "last_seen", draw(st.none() | timestamps))


@dataclass(frozen=True)
class Batch:
    """An events frame; sequences after the lanes' cursors are fixed when it is sent."""

    # (lane, steps after the lane's cursor or None for `seq`, seq, the event without it)
    events: tuple[tuple[int, int | None, int, bridge_pb2.OutboxEvent], ...]

    def render(self, cursors: dict[int, int]) -> bytes:
        encoded = []
        for lane, step, seq, event in self.events:
            wire = bridge_pb2.OutboxEvent()
            wire.CopyFrom(event)
            _enum(wire, "lane", lane)
            wire.seq = seq
            if step is not None and lane in cursors:
                cursors[lane] = min(cursors[lane] + step, UINT64_MAX)
                wire.seq = cursors[lane]
            encoded.append(wire.SerializeToString())
        return frames.encode_batch(encoded)


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """Mostly what the relay accepts (each lane in order after its cursor, every event
    carrying something), so that the values inside reach its database; else anyhow."""
    clean = draw(st.integers(0, 3)) > 0
    count = draw(st.one_of(st.integers(1, 6), st.integers(1, WINDOW_EVENTS + 20)))
    events = []
    for _ in range(count):
        lane = draw(st.sampled_from([1, 2] if clean else [1, 2, 0, 3]))
        step = draw(st.integers(1, 3)) if clean or draw(st.booleans()) else None
        event = bridge_pb2.OutboxEvent()
        _stamp(event, "ts", draw(st.none() | timestamps))
        draw(payloads(event, empty=not clean))
        events.append((lane, step, draw(uint64), event))
    return Batch(tuple(events))


def _frame(**body: Any) -> bytes:
    return frames.encode(bridge_pb2.Frame(**body))


@st.composite
def misplaced(draw: st.DrawFn, who: Enrolled) -> bytes:
    """Frames the relay sends, or a gateway sends only at another step, or never."""
    kind = draw(
        st.sampled_from(
            [
                "hello",
                "proof",
                "challenge",
                "welcome",
                "ack",
                "heartbeat",
                "snapshot",
                "snapshot_request",
                "command_result",
                "alert_acknowledgement",
                "error",
                "events",
            ]
        )
    )
    if kind == "hello":
        hello = bridge_pb2.Hello(
            protocol_version=draw(st.sampled_from([PROTOCOL_VERSION, 0, 2, 2**32 - 1])),
            gateway_id=draw(st.sampled_from([who.gateway_id, "gw_unknown"]) | ids),
            hotel_id=draw(st.sampled_from([who.hotel_id, "htl_other"]) | ids),
            software_version=draw(texts),
        )
        return _frame(hello=hello)
    if kind == "proof":
        return _frame(proof=bridge_pb2.Proof(signature=draw(st.binary(max_size=80))))
    if kind == "challenge":
        return _frame(challenge=bridge_pb2.Challenge(nonce=draw(st.binary(max_size=40))))
    if kind == "welcome":
        return _frame(welcome=bridge_pb2.Welcome(window_events=draw(st.integers(0, 2**32 - 1))))
    if kind == "ack":
        ack = bridge_pb2.EventAck(seq=draw(uint64))
        _enum(ack, "lane", draw(enums))
        return _frame(ack=ack)
    if kind == "heartbeat":
        heartbeat = bridge_pb2.Heartbeat(backlog_events=draw(uint64), thinned_points=draw(uint64))
        _stamp(heartbeat, "sent_at", draw(st.none() | timestamps))
        _stamp(heartbeat, "oldest_unsent", draw(st.none() | timestamps))
        return _frame(heartbeat=heartbeat)
    if kind == "snapshot":
        snapshot = bridge_pb2.Snapshot(request_id=draw(texts), outbox_seq=draw(uint64))
        for _ in range(draw(st.integers(0, 3))):
            room = snapshot.rooms.add()
            room.room_id, room.name = draw(ids), draw(texts)
        for _ in range(draw(st.integers(0, 3))):
            _device(draw, snapshot.devices.add())
        for _ in range(draw(st.integers(0, 2))):
            _alert(draw, snapshot.alerts.add())
        return _frame(snapshot=snapshot)
    if kind == "snapshot_request":
        return _frame(snapshot_request=bridge_pb2.SnapshotRequest(request_id=draw(texts)))
    if kind == "command_result":
        return _frame(command_result=bridge_pb2.RemoteCommandResult())
    if kind == "alert_acknowledgement":
        acknowledgement = bridge_pb2.AlertAcknowledgement(alert_id=draw(ids))
        return _frame(alert_acknowledgement=acknowledgement)
    if kind == "error":
        error = bridge_pb2.Error(code=draw(texts), message=draw(texts), fatal=draw(st.booleans()))
        return _frame(error=error)
    return _frame(events=bridge_pb2.EventBatch())


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@dataclass(frozen=True)
class Damaged:
    """A message with bytes flipped, cut or inserted, or a field this version does not know.

    Positions are drawn before the message exists (a batch's sequences are fixed only
    when it is sent) and taken modulo its length.
    """

    message: bytes | Batch
    how: str
    at: int
    xor: int
    insert: bytes
    field: bytes

    def render(self, cursors: dict[int, int]) -> bytes:
        data = self.message if isinstance(self.message, bytes) else self.message.render(cursors)
        at = self.at % (len(data) + 1)
        if self.how == "flip" and data:
            at %= len(data)
            return data[:at] + bytes([data[at] ^ self.xor]) + data[at + 1 :]
        if self.how == "cut":
            return data[:at]
        if self.how == "insert":
            return data[:at] + self.insert + data[at:]
        if self.how == "nested_unknown" and data[:1] == b"\x0a":
            # Inside the Hello (field 1): the unknown field travels in the message it extends.
            hello = bridge_pb2.Frame.FromString(data).hello.SerializeToString() + self.field
            return b"\x0a" + _varint(len(hello)) + hello
        return data + self.field


@st.composite
def damaged(draw: st.DrawFn, message: bytes | Batch) -> Damaged:
    # A field number no version of Frame uses (14 and up), of any wire type.
    number = draw(st.integers(14, 2**29 - 1))
    wire = draw(st.sampled_from([0, 1, 2, 5]))
    if wire == 0:
        value = _varint(draw(st.integers(0, UINT64_MAX)))
    elif wire == 2:
        payload = draw(st.binary(max_size=40))
        value = _varint(len(payload)) + payload
    else:
        size = 8 if wire == 1 else 4
        value = draw(st.binary(min_size=size, max_size=size))
    return Damaged(
        message,
        how=draw(st.sampled_from(["flip", "cut", "insert", "unknown_field", "nested_unknown"])),
        at=draw(st.integers(0, 2**16)),
        xor=draw(st.integers(1, 255)),
        insert=draw(st.binary(min_size=1, max_size=16)),
        field=_varint(number << 3 | wire) + value,
    )


Message = bytes | str | Batch | Damaged


def _render(messages: list[Message], cursors: dict[int, int]) -> list[bytes | str]:
    return [m if isinstance(m, bytes | str) else m.render(cursors) for m in messages]


# -- the properties -----------------------------------------------------------------------------
@pytest.mark.timeout(300)  # a failure is shrunk against the real relay, a connection a try
@FUZZ
@given(data=st.data())
def test_any_messages_on_a_fresh_connection_end_it_with_a_reason(
    target: Target, data: st.DataObject
) -> None:
    who = target.fuzzed
    valid_hello = _frame(
        hello=bridge_pb2.Hello(
            protocol_version=PROTOCOL_VERSION, gateway_id=who.gateway_id, hotel_id=who.hotel_id
        )
    )
    one = st.one_of(
        st.binary(max_size=300),
        st.text(max_size=100),
        misplaced(who),
        batches(),
        st.just(valid_hello),
        damaged(valid_hello),
        misplaced(who).flatmap(damaged),
    )
    drawn: list[Message] = data.draw(st.lists(one, min_size=1, max_size=4), "messages")
    messages = _render(drawn, {})
    with _connect(target) as ws:
        _send_all(ws, messages)
        ending = _ending(ws)
    _check(ending, messages, target)


@pytest.mark.timeout(300)
@FUZZ
@given(data=st.data())
def test_any_messages_after_a_real_handshake_end_it_with_a_reason(
    target: Target, data: st.DataObject
) -> None:
    who = target.fuzzed
    one = st.one_of(
        batches(),
        batches(),  # twice: most of what a gateway sends is events
        batches().flatmap(damaged),
        misplaced(who),
        misplaced(who).flatmap(damaged),
        st.binary(max_size=200),
    )
    drawn: list[Message] = data.draw(st.lists(one, min_size=1, max_size=5), "messages")
    gateway = target.new_gateway()
    with _connect(target) as ws:
        welcome = _handshake(ws, gateway)
        cursors = {1: welcome.last_acked_seq, 2: welcome.last_acked_priority_seq}
        messages = _render(drawn, cursors)
        _send_all(ws, messages)
        ending = _ending(ws)
    _check(ending, messages, target)


# -- cases worth stating on their own ---------------------------------------------------------------
def _telemetry(seq: int, *, seconds: int | None = None, device_id: str = "r1-env") -> bytes:
    """A reading; by default at a time of its own (a point per second from 2023)."""
    event = bridge_pb2.OutboxEvent(seq=seq, lane=bridge_pb2.LANE_BULK)
    event.telemetry.device_id, event.telemetry.metric = device_id, "humidity"
    event.telemetry.value = float(seq % 100)
    event.telemetry.ts.seconds = 1_700_000_000 + seq % 1000 if seconds is None else seconds
    return event.SerializeToString()


def _heartbeat(**values: int) -> bytes:
    heartbeat = bridge_pb2.Heartbeat(
        backlog_events=values.get("backlog", 0), thinned_points=values.get("thinned", 0)
    )
    if "oldest_s" in values:
        heartbeat.oldest_unsent.seconds = values["oldest_s"]
    return _frame(heartbeat=heartbeat)


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(frames.encode_batch([_telemetry(UINT64_MAX)]), id="seq-past-int64"),
        pytest.param(
            frames.encode_batch([_telemetry(10**6, seconds=2**62)]), id="time-past-year-9999"
        ),
        pytest.param(_heartbeat(backlog=UINT64_MAX), id="backlog-past-int64"),
        pytest.param(_heartbeat(oldest_s=2**62), id="oldest-unsent-past-year-9999"),
    ],
)
def test_numbers_past_what_the_relay_stores_end_the_connection_with_a_reason(
    target: Target, message: bytes
) -> None:
    """Each is a valid protobuf value that no database column holds; the relay must say so
    (or skip the event), not fail in its connection handler."""
    gateway = target.new_gateway()
    with _connect(target) as ws:
        _handshake(ws, gateway)
        _send_all(ws, [message])
        ending = _ending(ws)
    _check(ending, [message], target)


@pytest.mark.parametrize("size", [MAX_FRAME_BYTES, MAX_FRAME_BYTES + 1], ids=["at-limit", "past"])
def test_a_message_at_and_past_the_size_limit(target: Target, size: int) -> None:
    message = b"\x00" * size
    with _connect(target) as ws:
        _send_all(ws, [message])
        ending = _ending(ws)
    _check(ending, [message], target)
    if size > MAX_FRAME_BYTES:
        assert ending.close_code == WsClose.MESSAGE_TOO_BIG or [e.code for e in ending.errors] == [
            CloseCode.TOO_LARGE.value
        ]
    else:
        assert [e.code for e in ending.errors] == [CloseCode.BAD_FRAME.value]


def test_a_silent_client_is_closed_at_the_handshake_deadline(target: Target) -> None:
    with _connect(target) as ws:
        started = time.monotonic()
        ending = _ending(ws)
        took = time.monotonic() - started
    assert [e.code for e in ending.errors] == [CloseCode.HANDSHAKE_TIMEOUT.value]
    assert took < HANDSHAKE_TIMEOUT_S + 3.0, f"closed after {took:.1f} s"


# -- afterwards -----------------------------------------------------------------------------------
def test_the_relay_lives_on_and_serves_a_well_behaved_gateway(target: Target) -> None:
    """Runs last in this module: after everything above, a real gateway's batch is stored
    and acknowledged, the REST API answers, and the log holds no failure."""
    relay, who = target.relay, target.good
    assert relay.running
    room = bridge_pb2.OutboxEvent(seq=1, lane=bridge_pb2.LANE_BULK)
    room.room.room_id, room.room.name = "101", "Room 101"
    device = bridge_pb2.OutboxEvent(seq=2, lane=bridge_pb2.LANE_BULK)
    device.device.device_id, device.device.room_id = "r101-env", "101"
    device.device.registered = True
    device.device.kind = common_pb2.DEVICE_KIND_ENVIRONMENT_SENSOR
    batch = [room.SerializeToString(), device.SerializeToString()]
    batch += [_telemetry(seq, device_id="r101-env") for seq in (3, 4, 5)]
    with _connect(target) as ws:
        welcome = _handshake(ws, who)
        assert welcome.last_acked_seq == 0
        ws.send(frames.encode_batch(batch))
        deadline = time.monotonic() + END_WITHIN_S
        while True:
            frame = _recv_frame(ws, deadline)
            if frame.WhichOneof("body") == "ack" and frame.ack.seq == 5:
                break
    assert len(target.good_tenant.points("r101-env", "humidity")) == 3
    with relay.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
    log = relay.log.read_text(errors="replace")
    assert "connection handler failed" not in log, _traceback(target)
    assert "Traceback" not in log, _traceback(target)
    assert relay.running
