"""Which path served a page and how fresh its data is, for the page's banner."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from bellhop_sdk import Freshness

__all__ = ["Served", "served_by"]


@dataclass(frozen=True)
class Served:
    """Which path served a page and how fresh its data is, for the page's banner."""

    path: str
    as_of: datetime
    stale_since: datetime | None

    @property
    def label(self) -> str:
        return "LAN" if self.path == "lan" else "cloud"


def served_by(freshness: Iterable[Freshness], fallback: str | None) -> Served | None:
    """The oldest `as_of` and earliest `stale_since` of what a page shows."""
    items = list(freshness)
    if not items:
        if fallback is None:
            return None
        return Served(fallback, datetime.now(UTC), None)
    stale = [f.stale_since for f in items if f.stale_since is not None]
    return Served(
        str(items[0].path.value),
        min(f.as_of for f in items),
        min(stale) if stale else None,
    )
