"""The shared protocol vectors (firmware/vectors/*.json) against the Python codec.

The firmware's C++ core runs the same files; a failure here means the codec
and the written protocol disagree.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from bellhop_devices import codec
from bellhop_devices.messages import (
    Ack,
    AckStatus,
    Channel,
    Command,
    DeviceKind,
    DeviceMessage,
    Event,
    EventKind,
    StateReport,
    Status,
    Telemetry,
)

VECTORS = Path(__file__).resolve().parents[3] / "firmware" / "vectors"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return doc


DECODE = _load("decode.json")
ENCODE = _load("encode.json")
TOPICS = _load("topics.json")
COMMANDS = _load("commands.json")


def _params(vectors: list[dict[str, Any]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("vector", vectors, ids=[v["name"] for v in vectors])


def _payload(vector: dict[str, Any]) -> bytes:
    if "payload_base64" in vector:
        return base64.b64decode(vector["payload_base64"])
    text: str = vector["payload"]
    return text.encode()


def _normalise(msg: DeviceMessage) -> dict[str, Any]:
    channel = {
        Telemetry: "telemetry",
        StateReport: "state",
        Event: "event",
        Status: "status",
        Ack: "ack",
    }[type(msg)]
    return {"channel": channel, **dataclasses.asdict(msg)}


def _message(channel: str, fields: dict[str, Any], device_id: str = "dev-1") -> Any:
    if channel == "telemetry":
        return Telemetry(device_id, fields["ts"], fields["seq"], fields["metrics"])
    if channel == "state":
        return StateReport(device_id, fields["ts"], fields["values"])
    if channel == "event":
        return Event(device_id, fields["ts"], EventKind(fields["kind"]), fields["data"])
    if channel == "status":
        kind = fields["kind"]
        return Status(
            device_id,
            fields["online"],
            fields["ts"],
            None if kind is None else DeviceKind(kind),
            fields["firmware"],
        )
    if channel == "ack":
        return Ack(
            device_id,
            fields["id"],
            AckStatus(fields["status"]),
            fields["result"],
            fields["error"],
        )
    assert channel == "cmd"
    return Command(fields["id"], fields["name"], fields["params"], fields["expires_at"])


def test_vector_names_are_unique() -> None:
    groups = [
        DECODE["vectors"],
        ENCODE["vectors"],
        *(TOPICS[k] for k in ("build", "broadcast", "subscriptions", "parse")),
        COMMANDS["decode"],
        COMMANDS["guard"],
    ]
    for group in groups:
        names = [v["name"] for v in group]
        assert len(names) == len(set(names))


def test_every_reject_reason_has_a_vector() -> None:
    used = {v["expect"]["error"] for v in DECODE["vectors"] if "error" in v["expect"]}
    assert used == {r.value for r in codec.RejectReason}


@_params(DECODE["vectors"])
def test_decode(vector: dict[str, Any]) -> None:
    max_bytes = vector.get("max_bytes", DECODE["max_bytes"])
    payload = _payload(vector)
    expect = vector["expect"]
    if "error" in expect:
        with pytest.raises(codec.DecodeError) as info:
            codec.decode(vector["topic"], payload, hotel_id=DECODE["hotel_id"], max_bytes=max_bytes)
        assert info.value.reason == expect["error"], info.value.detail
        assert info.value.detail
    else:
        msg = codec.decode(
            vector["topic"], payload, hotel_id=DECODE["hotel_id"], max_bytes=max_bytes
        )
        assert _normalise(msg) == expect["ok"]


@_params(ENCODE["vectors"])
def test_encode(vector: dict[str, Any]) -> None:
    msg = _message(vector["channel"], vector["message"])
    payload = codec.encode_command(msg) if vector["channel"] == "cmd" else codec.encode(msg)
    assert payload == vector["payload"].encode()


@_params(ENCODE["vectors"])
def test_encoded_payload_decodes_to_the_same_message(vector: dict[str, Any]) -> None:
    msg = _message(vector["channel"], vector["message"])
    payload = vector["payload"].encode()
    if vector["channel"] == "cmd":
        assert codec.decode_command(payload) == msg
    else:
        t = codec.topic("hotel-rt", msg.device_id, Channel(vector["channel"]))
        assert codec.decode(t, payload, hotel_id="hotel-rt") == msg


@_params(TOPICS["build"])
def test_topic_build(vector: dict[str, Any]) -> None:
    args = (vector["hotel_id"], vector["device_id"], Channel(vector["channel"]))
    if "error" in vector:
        with pytest.raises(codec.DecodeError) as info:
            codec.topic(*args)
        assert info.value.reason == vector["error"]
    else:
        assert codec.topic(*args) == vector["topic"]


@_params(TOPICS["broadcast"])
def test_broadcast_topic(vector: dict[str, Any]) -> None:
    if "error" in vector:
        with pytest.raises(codec.DecodeError) as info:
            codec.broadcast_topic(vector["hotel_id"])
        assert info.value.reason == vector["error"]
    else:
        assert codec.broadcast_topic(vector["hotel_id"]) == vector["topic"]


@_params(TOPICS["subscriptions"])
def test_subscriptions(vector: dict[str, Any]) -> None:
    assert codec.subscriptions(vector["hotel_id"]) == vector["filters"]


@_params(TOPICS["parse"])
def test_parse_topic(vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    if "error" in expect:
        with pytest.raises(codec.DecodeError) as info:
            codec.parse_topic(vector["topic"], hotel_id=vector["hotel_id"])
        assert info.value.reason == expect["error"]
    else:
        parsed = codec.parse_topic(vector["topic"], hotel_id=vector["hotel_id"])
        assert dataclasses.asdict(parsed) == expect["ok"]


@_params(COMMANDS["decode"])
def test_decode_command(vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    payload = vector["payload"].encode()
    if "error" in expect:
        with pytest.raises(codec.DecodeError) as info:
            codec.decode_command(payload)
        assert info.value.reason == expect["error"]
    else:
        assert dataclasses.asdict(codec.decode_command(payload)) == expect["ok"]


@_params(COMMANDS["guard"])
def test_command_guard(vector: dict[str, Any]) -> None:
    guard = codec.CommandGuard(vector["device_id"], capacity=vector["capacity"])
    for step in vector["steps"]:
        cmd = codec.decode_command(step["payload"].encode())
        verdict = guard.check(cmd, step["now"])
        assert verdict.kind == step["expect"]["verdict"]
        ack = verdict.ack
        outcome = step.get("outcome")
        if verdict.kind is codec.VerdictKind.EXECUTE and outcome is not None:
            ack = Ack(
                vector["device_id"],
                cmd.id,
                AckStatus(outcome["status"]),
                outcome.get("result"),
                outcome.get("error"),
            )
            guard.record(ack)
        expected_ack = step["expect"]["ack"]
        if expected_ack is None:
            assert ack is None
        else:
            assert ack is not None
            assert codec.encode(ack) == expected_ack.encode()
