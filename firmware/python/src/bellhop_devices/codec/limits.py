"""The protocol's size, range and time limits, and the Last Will payload."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

DEFAULT_MAX_BYTES: Final = 4096
MAX_ENTRIES: Final = 32
MAX_DEPTH: Final = 4
MAX_TEXT_LEN: Final = 128
MAX_TS: Final = 2**53 - 1
MAX_SEQ: Final = 2**32 - 1
METRIC_LIMIT: Final = 1e9
WILL_PAYLOAD: Final = b"offline"

METRIC_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "temperature": (-40, 125),
    "setpoint": (5, 35),
    "humidity": (0, 100),
    "luminosity": (0, 200_000),
    "brightness": (0, 100),
    "battery": (0, 100),
    "gas_ppm": (0, 100_000),
    "power_w": (0, 10_000),
    "rssi": (-127, 0),
}
"""Bounds of the metrics (and same-named state values) the protocol knows.
Any other numeric metric must lie within +/- METRIC_LIMIT."""

CACHE_LIMIT: Final = 16_384
"""Most entries a decode-side cache of valid names or topics may hold."""
