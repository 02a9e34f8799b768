"""Differential check: the C++ core and the Python codec judge the same bytes alike.

Mutates every payload of the shared vectors many times (seeded, so a failure
reproduces), decodes each mutant with both implementations and compares the
reject code, and for accepted payloads the decoded message. Run by CTest when
the project's Python environment is present:

    differential.py <decode_tool> <vectors_dir> [--count N] [--seed S]
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError

FRAGMENTS = [
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    '"',
    "\\",
    "\\u00e9",
    "\\ud800",
    "\\ud83d\\ude00",
    "\\n",
    " ",
    "\t",
    "0",
    "-0",
    "1",
    "-1",
    "1.5",
    "1e3",
    "1e999",
    "-1e999",
    "1.0",
    "9007199254740992",
    "4294967296",
    "99999999999999999999",
    "true",
    "false",
    "null",
    "NaN",
    "Infinity",
    "-Infinity",
    '"v":2',
    '"v":1',
    '"ts":1',
    '"seq":1',
    '"x":[[[[1]]]]',
    '"x":[[[1]]]',
    '"metrics":{}',
    '"data":{}',
    '"params":{}',
    '"id":"c-1"',
    "é",
    "\x00",
    "\x1f",
    "\x7f",
    '"ts":1763790000000',
    '"kind":"door"',
    '"open":true',
    '"status":"ok"',
    '"error":"e"',
    '"result":{}',
    '"state":"online"',
    '"firmware":"1.0"',
    '"kind":"thermostat"',
    "\xff",
]


def python_decode(mode: str, topic: str, hotel_id: str, payload: bytes) -> dict[str, Any]:
    try:
        if mode == "command":
            cmd = codec.decode_command(payload)
            message: Any = {
                "id": cmd.id,
                "name": cmd.name,
                "params": dict(cmd.params),
                "expires_at": cmd.expires_at,
            }
        else:
            msg = codec.decode(topic, payload, hotel_id=hotel_id)
            message = normalise(msg)
    except DecodeError as exc:
        return {"reason": exc.reason.value, "message": None}
    return {"reason": "none", "message": message}


def normalise(msg: Any) -> dict[str, Any]:
    name = type(msg).__name__
    if name == "Telemetry":
        body = {"channel": "telemetry", "ts": msg.ts, "seq": msg.seq, "metrics": dict(msg.metrics)}
    elif name == "StateReport":
        body = {"channel": "state", "ts": msg.ts, "values": dict(msg.values)}
    elif name == "Event":
        body = {"channel": "event", "ts": msg.ts, "kind": msg.kind.value, "data": dict(msg.data)}
    elif name == "Status":
        body = {
            "channel": "status",
            "online": msg.online,
            "ts": msg.ts,
            "kind": msg.kind.value if msg.kind else None,
            "firmware": msg.firmware,
        }
    else:
        body = {
            "channel": "ack",
            "id": msg.id,
            "status": msg.status.value,
            "result": dict(msg.result) if msg.result is not None else None,
            "error": msg.error,
        }
    body["device_id"] = msg.device_id
    return body


def same(a: Any, b: Any) -> bool:
    """Equal as the vectors compare: numbers by value, everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b) or (math.isnan(float(a)) and math.isnan(float(b)))
    return bool(a == b)


VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -0.0,
    1,
    -1,
    1.5,
    21.125,
    1e9,
    1e9 + 1,
    -1e9 - 1,
    2**53 - 1,
    2**53,
    2**32 - 1,
    2**32,
    2**64,
    -5,
    100,
    101,
    200000,
    200001,
    -127,
    -128,
    1e-7,
    "",
    "x",
    "é" * 128,
    "é" * 129,
    "on",
    "online",
    "offline",
    "door",
    "gas",
    "battery",
    "breach",
    "button",
    "ok",
    "error",
    "expired",
    "heat",
    "thermostat",
    "gas_sensor",
    "1.0",
    "v 1",
    "c-1",
    "c/1",
    "-c",
    "edge:1.2",
    "a" * 64,
    "a" * 65,
    [],
    {},
    [1],
    {"a": 1},
    [[1]],
    [[[1]]],
    [[[[1]]]],
    {"a": {"b": {"c": 1}}},
    {"a": [1, {"b": [2]}]},
    {"Bad": 1},
    {"ok_name": "t"},
    {"open": True},
    {"open": "yes"},
    {"gas_ppm": 5},
    {"battery": 101},
    {"setpoint": 36},
    {f"m{i}": i for i in range(32)},
    {f"m{i}": i for i in range(33)},
]
KEYS = [
    "v",
    "ts",
    "seq",
    "metrics",
    "values",
    "kind",
    "data",
    "state",
    "firmware",
    "id",
    "status",
    "result",
    "error",
    "name",
    "params",
    "expires_at",
    "x",
    "temperature",
    "setpoint",
    "open",
    "gas_ppm",
    "battery",
    "humidity",
    "Temperature",
    "1st",
    "a" * 33,
]


def mutate_tree(rng: random.Random, obj: Any, depth: int = 0) -> Any:
    """Rewrites one spot of a parsed payload: a value, a key, an addition or a removal."""
    if isinstance(obj, dict) and obj and (depth == 0 or rng.random() < 0.5):
        items = list(obj.items())
        i = rng.randrange(len(items))
        op = rng.randrange(5)
        if op == 0:
            items[i] = (items[i][0], rng.choice(VALUES))
        elif op == 1:
            items[i] = (rng.choice(KEYS), items[i][1])
        elif op == 2:
            items.insert(rng.randint(0, len(items)), (rng.choice(KEYS), rng.choice(VALUES)))
        elif op == 3:
            del items[i]
        else:
            items[i] = (items[i][0], mutate_tree(rng, items[i][1], depth + 1))
        return dict(items) if op != 1 else {k: v for k, v in items}
    if isinstance(obj, dict):
        return {k: mutate_tree(rng, v, depth + 1) for k, v in obj.items()}
    return rng.choice(VALUES)


def dump(rng: random.Random, obj: Any) -> bytes:
    text = json.dumps(
        obj, ensure_ascii=rng.random() < 0.5, separators=rng.choice([(",", ":"), (", ", ": ")])
    )
    return text.encode("utf-8", "surrogatepass")


def mutate(rng: random.Random, payload: bytes) -> bytes:
    if rng.random() < 0.5:
        try:
            parsed = json.loads(payload)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return dump(rng, mutate_tree(rng, parsed))
    data = bytearray(payload)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        at = rng.randint(0, len(data))
        if op == 0 and data:  # flip a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:  # insert a fragment
            data[at:at] = rng.choice(FRAGMENTS).encode("utf-8", "surrogateescape")
        elif op == 2 and data:  # delete a span
            del data[at : at + rng.randint(1, 8)]
        elif op == 3:  # truncate
            del data[at:]
        elif op == 4 and data:  # duplicate a span
            end = min(len(data), at + rng.randint(1, 24))
            data[at:at] = data[at:end]
        else:  # replace a token-ish span with a fragment
            fragment = rng.choice(FRAGMENTS).encode("utf-8", "surrogateescape")
            data[at : at + rng.randint(1, 6)] = fragment
    return bytes(data)


def seeds(vectors: Path) -> list[tuple[str, str, str, bytes]]:
    out: list[tuple[str, str, str, bytes]] = []
    decode = json.loads((vectors / "decode.json").read_text())
    hotel = decode["hotel_id"]
    for v in decode["vectors"]:
        text = v.get("payload")
        raw = text.encode() if text is not None else base64.b64decode(v["payload_base64"])
        if "max_bytes" not in v:
            out.append(("device", v["topic"], hotel, raw))
    commands = json.loads((vectors / "commands.json").read_text())
    for v in commands["decode"]:
        out.append(("command", "", "", v["payload"].encode()))
    for g in commands["guard"]:
        for step in g["steps"]:
            out.append(("command", "", "", step["payload"].encode()))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tool")
    parser.add_argument("vectors", type=Path)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--seed", type=int, default=20261122)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cases = []
    for mode, topic, hotel, payload in seeds(args.vectors):
        cases.append((mode, topic, hotel, payload))
        cases.extend((mode, topic, hotel, mutate(rng, payload)) for _ in range(args.count))
    lines = "".join(
        json.dumps(
            {"mode": m, "topic": t, "hotel_id": h, "payload_b64": base64.b64encode(p).decode()}
        )
        + "\n"
        for m, t, h, p in cases
    )
    # The tool is the one CTest built and named on the command line.
    run = subprocess.run(  # noqa: S603
        [args.tool], input=lines, capture_output=True, text=True, timeout=120, check=True
    )
    answers = run.stdout.splitlines()
    if len(answers) != len(cases):
        print(f"decode tool answered {len(answers)} of {len(cases)} payloads", file=sys.stderr)
        return 1
    mismatches = 0
    accepted = 0
    for (mode, topic, hotel, payload), answer in zip(cases, answers, strict=True):
        ours = json.loads(answer)
        theirs = python_decode(mode, topic, hotel, payload)
        accepted += theirs["reason"] == "none"
        if ours["reason"] != theirs["reason"] or (
            theirs["reason"] == "none" and not same(ours["message"], theirs["message"])
        ):
            mismatches += 1
            if mismatches <= 20:
                print(f"MISMATCH {mode} {topic} {payload!r}: C++ {ours} / Python {theirs}")
    print(f"{len(cases)} payloads, {accepted} accepted by both, {mismatches} mismatches")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
