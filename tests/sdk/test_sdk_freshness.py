"""How current the cloud's copy is, from the relay's `last_seen` and `stale` (no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from bellhop_sdk.cloud_events import freshness_of
from bellhop_sdk.models import Freshness, Path

READ = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SEEN = READ - timedelta(seconds=30)
GONE = READ - timedelta(minutes=5)

CASES = [
    # last_seen, stale, online, gateway gone, expected stale_since (as_of: SEEN or READ)
    (SEEN, False, True, None, None),
    (SEEN, True, True, None, SEEN),
    (SEEN, False, False, None, SEEN),
    (SEEN, True, False, GONE, SEEN),  # its own last contact wins over the gateway's
    (None, False, True, None, None),  # online and not stale: current, never stale at once
    (None, False, True, GONE, None),
    (None, True, True, None, READ),  # stale with no time known: since the read
    (None, True, True, GONE, GONE),  # stale: since the gateway was last heard
    (None, False, False, None, READ),  # offline
    (None, True, False, GONE, GONE),
]


@pytest.mark.parametrize(("seen", "stale", "online", "gone", "since"), CASES)
def test_stale_since_follows_the_relay(
    seen: datetime | None,
    stale: bool,
    online: bool,
    gone: datetime | None,
    since: datetime | None,
) -> None:
    got = freshness_of(seen, stale, online=online, read_at=READ, gateway_gone=gone)
    assert got == Freshness(Path.CLOUD, SEEN if seen is not None else READ, since)
    assert got.stale is (since is not None)
