"""Fixtures shared by every test: a real Mosquitto, names derived from the test;
and each test process's own range of ports."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import MosquittoBroker, require_mosquitto, use_port_range

# Ports the tests pick for the servers they start come from a range of this process's
# own, below the kernel's ephemeral ports (32768 and up): two pytest-xdist workers never
# pick the same port, and no outgoing connection takes one between pick and listen.
PORTS_PER_PROCESS = 2000
_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
_slot = (int(_worker[2:]) + 1 if _worker.startswith("gw") else 0) % 11
use_port_range(10_000 + _slot * PORTS_PER_PROCESS, 10_000 + (_slot + 1) * PORTS_PER_PROCESS - 1)


@pytest.fixture
def test_name(request: pytest.FixtureRequest) -> str:
    """A short id unique to this test, safe in topics and hotel ids."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return name[-40:].strip("-")


@pytest.fixture
def hotel_id(test_name: str) -> str:
    return f"h-{test_name}"[:48]


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A fresh broker on a free port with generated password file and ACL."""
    require_mosquitto()
    workdir = tmp_path / "mosquitto"
    workdir.mkdir()
    broker = MosquittoBroker(workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
