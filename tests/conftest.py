"""Fixtures shared by every test: a real Mosquitto, names derived from the test;
and each test process's own range of ports."""

from __future__ import annotations

import os
import re
import tempfile
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

# The processes the tests start (relays, gateways, the CLI: hundreds of starts) keep
# their bytecode in one place of their own: where the environment forbids writing it
# beside the sources (PYTHONDONTWRITEBYTECODE), each start would compile every module it
# imports again, seconds each on a busy machine. What runs is the same code (a cached
# module is checked against its source), and each file is written whole, by rename, so
# processes of any worker or run share it safely.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault(
    "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / f"bellhop-pycache-{os.getuid()}")
)


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
