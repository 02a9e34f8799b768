"""Property-style checks of the codec beyond the fixed vectors: round trips,
and that no input whatsoever escapes as anything but DecodeError."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import pytest
from bellhop_devices import codec
from bellhop_devices.messages import (
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceKind,
    Event,
    EventKind,
    StateReport,
    Status,
    Telemetry,
)

HOTEL = "hotel-props"


def _name(rng: random.Random) -> str:
    return rng.choice(string.ascii_lowercase) + "".join(
        rng.choice(string.ascii_lowercase + string.digits + "_") for _ in range(rng.randint(0, 12))
    )


def _number(rng: random.Random) -> float | int:
    if rng.random() < 0.5:
        return rng.randint(-1000, 1000)
    return round(rng.uniform(-1000, 1000), rng.randint(0, 4))


def _scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            True,
            False,
            None,
            _number(rng),
            "".join(rng.choice(string.printable + "éß€") for _ in range(rng.randint(0, 20))),
        ]
    )


def _messages(rng: random.Random) -> list[Any]:
    dev = "dev-" + str(rng.randint(0, 999))
    ts = rng.randint(0, 2**53 - 1)
    metrics = {_name(rng) + "_x": _number(rng) for _ in range(rng.randint(0, 8))}
    values = {_name(rng): _scalar(rng) for _ in range(rng.randint(0, 8))}
    return [
        Telemetry(dev, ts, rng.randint(0, 2**32 - 1), metrics),
        StateReport(dev, ts, values),
        Event(dev, ts, EventKind.BUTTON, values),
        Event(dev, ts, EventKind.DOOR, {"open": rng.random() < 0.5}),
        Event(dev, ts, EventKind.GAS, {"gas_ppm": rng.randint(0, 100_000)}),
        Event(dev, ts, EventKind.BATTERY, {"battery": rng.randint(0, 100), "low": True}),
        Status(dev, True, ts, rng.choice(list(DeviceKind)), "1.0." + str(rng.randint(0, 99))),
        Status(dev, False, ts),
        Status(dev, False),
        Ack(dev, "c-" + str(rng.randint(0, 10**9)), AckStatus.OK, values or None),
        Ack(dev, "c:" + str(rng.randint(0, 10**9)), AckStatus.ERROR, error="broken: " + dev),
        Ack(dev, "c." + str(rng.randint(0, 10**9)), AckStatus.EXPIRED, error="command expired"),
    ]


def _channel(msg: Any) -> Channel:
    return {
        Telemetry: Channel.TELEMETRY,
        StateReport: Channel.STATE,
        Event: Channel.EVENT,
        Status: Channel.STATUS,
        Ack: Channel.ACK,
    }[type(msg)]


@pytest.mark.parametrize("seed", range(20))
def test_every_message_type_round_trips(seed: int) -> None:
    rng = random.Random(seed)
    for msg in _messages(rng):
        payload = codec.encode(msg)
        assert len(payload) <= codec.DEFAULT_MAX_BYTES
        t = codec.topic(HOTEL, msg.device_id, _channel(msg))
        assert codec.decode(t, payload, hotel_id=HOTEL) == msg


@pytest.mark.parametrize("seed", range(5))
def test_command_round_trips(seed: int) -> None:
    rng = random.Random(seed)
    params = {_name(rng): _scalar(rng) for _ in range(rng.randint(0, 8))}
    cmd = Command("cmd-" + str(seed), _name(rng), params, rng.randint(0, 2**53 - 1))
    assert codec.decode_command(codec.encode_command(cmd)) == cmd


def _mutations(rng: random.Random, payload: bytes) -> list[bytes]:
    data = bytearray(payload)
    out = []
    for _ in range(60):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            pos = rng.randrange(len(mutated) + 1)
            if op < 0.4 and mutated:
                mutated[min(pos, len(mutated) - 1)] = rng.randrange(256)
            elif op < 0.7:
                mutated[pos:pos] = bytes([rng.choice(b'{}[]",:0-9eE.+-tfn\\u')])
            else:
                del mutated[pos : pos + rng.randint(1, 5)]
        out.append(bytes(mutated))
    return out


def _outcome(decode: Any, payload: bytes) -> Any:
    """The decoded message, or the DecodeError; anything else propagates."""
    try:
        return decode(payload)
    except codec.DecodeError as exc:
        return exc


@pytest.mark.parametrize("seed", range(10))
def test_mutated_payloads_decode_or_raise_decode_error(seed: int) -> None:
    rng = random.Random(seed)
    for msg in _messages(rng):
        t = codec.topic(HOTEL, msg.device_id, _channel(msg))
        for payload in _mutations(rng, codec.encode(msg)):
            outcome = _outcome(lambda p, t=t: codec.decode(t, p, hotel_id=HOTEL), payload)
            if isinstance(outcome, codec.DecodeError):
                assert outcome.reason in codec.RejectReason
                assert outcome.detail
            else:
                # Whatever is accepted must encode again (i.e. be clean JSON data).
                codec.encode(outcome)


@pytest.mark.parametrize("seed", range(5))
def test_mutated_commands_decode_or_raise_decode_error(seed: int) -> None:
    rng = random.Random(seed)
    cmd = Command("c-1", "set_light", {"on": True, "brightness": 40}, 1_763_790_000_000)
    for payload in _mutations(rng, codec.encode_command(cmd)):
        outcome = _outcome(codec.decode_command, payload)
        assert isinstance(outcome, Command | codec.DecodeError)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_deeply_nested_bomb_is_too_deep_not_a_crash(opener: bytes) -> None:
    t = codec.topic(HOTEL, "dev-bomb", Channel.STATE)
    payload = opener * 100_000
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(t, payload, hotel_id=HOTEL, max_bytes=len(payload))
    assert info.value.reason in (codec.RejectReason.TOO_DEEP, codec.RejectReason.MALFORMED_JSON)
    nested = opener * 5000 + b"1" + (b"]" if opener == b"[" else b"}") * 5000
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(t, nested, hotel_id=HOTEL, max_bytes=len(nested))
    assert info.value.reason == codec.RejectReason.TOO_DEEP


def test_oversized_payload_is_rejected_before_parsing() -> None:
    t = codec.topic(HOTEL, "dev-big", Channel.TELEMETRY)
    payload = b'{"ts":1,"seq":1,"metrics":{}}' + b" " * codec.DEFAULT_MAX_BYTES
    with pytest.raises(codec.DecodeError) as info:
        codec.decode(t, payload, hotel_id=HOTEL)
    assert info.value.reason == codec.RejectReason.TOO_LARGE
    assert str(len(payload)) in info.value.detail


def test_cached_topic_is_still_checked_against_the_hotel() -> None:
    t = codec.topic("hotel-cache-a", "dev-1", Channel.TELEMETRY)
    codec.parse_topic(t, hotel_id="hotel-cache-a")
    with pytest.raises(codec.DecodeError) as info:
        codec.parse_topic(t, hotel_id="hotel-cache-b")
    assert info.value.reason == codec.RejectReason.FOREIGN_HOTEL


def test_decode_error_is_a_value_error_with_a_readable_message() -> None:
    t = codec.topic(HOTEL, "dev-err", Channel.TELEMETRY)
    with pytest.raises(ValueError, match="missing_field: missing field 'seq'"):
        codec.decode(t, json.dumps({"ts": 1, "metrics": {}}).encode(), hotel_id=HOTEL)


def test_guard_memory_is_bounded() -> None:
    guard = codec.CommandGuard("dev-guard", capacity=8)
    for i in range(1000):
        verdict = guard.check(Command(f"c-{i}", "lock", {}, 10), now_ms=0)
        assert verdict.kind is codec.VerdictKind.EXECUTE
    assert len(guard) == 8
