"""Fixtures shared by every test: a real Mosquitto, names derived from the test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import MosquittoBroker, require_mosquitto


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
