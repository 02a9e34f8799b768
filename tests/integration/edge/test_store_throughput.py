"""The writer alone keeps well ahead of the edge's ingest target (P1: 15,000 msg/s).

Prints the measured rate; docs/edge-store.md records the figure.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from bellhop_edge.core.model import TelemetryPoint
from bellhop_edge.core.ops import PutTelemetry
from bellhop_edge.store import EdgeStore, StoreWriter

T0 = 1_800_000_000_000
DEVICES = 2000  # a full hotel
MESSAGES = 40_000
TARGET_MSG_S = 15_000


def _messages(prefix: str) -> list[PutTelemetry]:
    out = []
    for i in range(MESSAGES):
        device, ts = f"{prefix}-{i % DEVICES:04d}", T0 + i
        out.append(
            PutTelemetry(
                (
                    TelemetryPoint(device, "temperature", ts, 21.5),
                    TelemetryPoint(device, "humidity", ts, 45.0),
                    TelemetryPoint(device, "luminosity", ts, 300.0),
                )
            )
        )
    return out


async def _rate(path: Path, prefix: str, *, busy_loop: bool) -> float:
    EdgeStore.open(path).close()
    messages = _messages(prefix)
    stop = threading.Event()

    def spin() -> None:  # stands in for an event loop that is busy parsing MQTT
        while not stop.is_set():
            sum(range(100))

    async with StoreWriter(path) as writer:
        for message in messages[:DEVICES]:  # every series exists, as in steady state
            writer.submit(message)
        await writer.flush()
        spinner = threading.Thread(target=spin)
        if busy_loop:
            spinner.start()
        try:
            start = time.perf_counter()
            for k, message in enumerate(messages[DEVICES:]):
                await writer.put(message)
                if k % 500 == 0:
                    await asyncio.sleep(0)
            await writer.flush()
            elapsed = time.perf_counter() - start
        finally:
            stop.set()
            if busy_loop:
                spinner.join()
    return (MESSAGES - DEVICES) / elapsed


@pytest.mark.parametrize("busy_loop", [False, True], ids=["alone", "gil-contended"])
async def test_writer_throughput(tmp_path: Path, test_name: str, busy_loop: bool) -> None:
    rate = await _rate(tmp_path / "edge.db", test_name, busy_loop=busy_loop)
    print(
        f"\nstore writer ({'GIL contended' if busy_loop else 'alone'}): {rate:,.0f} msg/s = "
        f"{3 * rate:,.0f} points/s + {3 * rate:,.0f} outbox rows/s"
    )
    assert rate >= TARGET_MSG_S
