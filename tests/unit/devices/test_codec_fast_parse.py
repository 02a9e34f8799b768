"""The codec's fast JSON path must parse exactly what the strict parser parses.

Every payload of the shared vectors, and many damaged variants of them, go
through both; where the fast path answers, its value (types included) must
equal the strict parser's, and where the strict parser refuses, the fast path
must not answer.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
from bellhop_devices import codec
from bellhop_devices.codec import parse
from bellhop_devices.errors import DecodeError

VECTORS = Path(__file__).resolve().parents[3] / "firmware" / "vectors"
_SIGNIFICANT = [b"{", b"}", b"[", b"]", b":", b",", b'"', b"\\", b"1", b"e", b"-", b".", b" "]


def _payloads() -> list[bytes]:
    cases = json.loads((VECTORS / "decode.json").read_text(encoding="utf-8"))["vectors"]
    found = []
    for case in cases:
        if "payload_base64" in case:
            found.append(base64.b64decode(case["payload_base64"]))
        elif "payload" in case:
            found.append(case["payload"].encode())
    return found


def _damaged(payload: bytes, rng: random.Random) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.randint(1, 3)):
        at = rng.randint(0, len(data))
        if data and rng.random() < 0.5:
            del data[min(at, len(data) - 1)]
        else:
            data[at:at] = rng.choice(_SIGNIFICANT)
    return bytes(data)


def _strict(payload: bytes) -> Any:
    try:
        return parse.strict_load(payload)
    except DecodeError:
        return DecodeError


def _typed(value: Any) -> str:
    # json.dumps tells 1 from 1.0 and keeps key order.
    return json.dumps(value)


SPECIAL = [
    b'{"a":1,"a":2}',
    b'{"a":{"b":1,"b":1}}',
    b'{"a":"x:y"}',
    b'{"a:b":1}',
    b'{"ts":99999999999999999999999}',
    b'{"ts":-99999999999999999999999}',
    b'{"x":1e400}',
    b'{"x":NaN}',
    b'{"x":Infinity}',
    b'{"x":"\\ud800"}',
    b'\xef\xbb\xbf{"a":1}',
    b'{"a":"\xff"}',
    b"[" * 2000 + b"]" * 2000,
    b'{"a":' * 600 + b"1" + b"}" * 600,
    b'{"a":-0,"b":0.0,"c":1E2,"d":18446744073709551615,"e":-9223372036854775808}',
    b' {"a" : [ {"b" : 1} , 2 ] } ',
    b'"top"',
    b"12",
]


@pytest.mark.parametrize("payload", SPECIAL)
def test_special_cases_agree(payload: bytes) -> None:
    fast = parse.fast_load(payload)
    if fast is not None:
        assert _typed(fast) == _typed(_strict(payload))


def test_vectors_and_damaged_variants_agree() -> None:
    rng = random.Random(20261122)
    answered = 0
    for payload in _payloads():
        for candidate in [payload] + [_damaged(payload, rng) for _ in range(40)]:
            fast = parse.fast_load(candidate)
            if fast is None:
                continue
            answered += 1
            strict = _strict(candidate)
            assert strict is not DecodeError, candidate
            assert _typed(fast) == _typed(strict), candidate
    # The fast path must actually be taken for ordinary payloads.
    assert answered > 100


def test_duplicate_keys_are_still_rejected() -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode(
            "hotel/h/device/d/telemetry",
            b'{"ts":1,"seq":1,"metrics":{"temperature":20,"temperature":99}}',
            hotel_id="h",
        )
    assert info.value.reason.value == "duplicate_key"
