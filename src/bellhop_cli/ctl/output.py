"""How `bellhop ctl` prints: tables for people, JSON for scripts, and always who served it.

Every answer names the path that served it (LAN, with the gateway's address, or cloud)
and how fresh it is: "as of" (when the data was last known true) and "stale since"
(when it stopped being current), taken from the models' `freshness`. With `--json`
each call prints one JSON document on stdout (`follow`: one per line), with the same
facts under `"served"`; diagnostics and progress go to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final

from bellhop_sdk import Freshness, Path
from rich.console import Console
from rich.table import Table

__all__ = ["Output", "Served", "fmt_time", "jsonable", "served_by"]

WIDE: Final = 240  # columns of a table printed to a pipe


def fmt_time(moment: datetime | None) -> str:
    """UTC to the second, with its age: `2026-05-09 07:35:25Z (3 s ago)`."""
    if moment is None:
        return "-"
    moment = moment.astimezone(UTC)
    age = (datetime.now(UTC) - moment).total_seconds()
    when = moment.strftime("%Y-%m-%d %H:%M:%SZ")
    if age < -1:
        return f"{when} (in {_span(-age)})"
    return f"{when} ({_span(max(age, 0.0))} ago)"


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def jsonable(value: Any) -> Any:
    """Models, enums, times and mappings as plain JSON values (times as ISO 8601 UTC)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Served:
    """Which path served an answer, from where, as of when, stale since when."""

    path: Path | None
    where: str | None
    as_of: datetime
    stale_since: datetime | None = None
    stale_items: int = 0

    def line(self) -> str:
        name = "-" if self.path is None else self.path.value.upper()
        where = f" {self.where}" if self.where else ""
        text = f"served by {name}{where} · as of {fmt_time(self.as_of)}"
        if self.stale_since is not None:
            count = f"{self.stale_items} stale, " if self.stale_items > 1 else ""
            text += f" · {count}stale since {fmt_time(self.stale_since)}"
        return text

    def document(self) -> dict[str, Any]:
        return {
            "path": None if self.path is None else self.path.value,
            "where": self.where,
            "as_of": jsonable(self.as_of),
            "stale_since": jsonable(self.stale_since),
        }


def served_by(
    freshness: Iterable[Freshness],
    *,
    path: Path | None,
    where: Mapping[Path, str | None],
) -> Served:
    """One `Served` for a whole answer: the oldest `as_of` and the earliest `stale_since`
    of its items; `path` (the client's last path) when the answer has no items."""
    items = list(freshness)
    if items:
        path = items[0].path
    as_of = min((f.as_of for f in items), default=datetime.now(UTC))
    stale = [f.stale_since for f in items if f.stale_since is not None]
    return Served(
        path,
        None if path is None else where.get(path),
        as_of,
        min(stale) if stale else None,
        len(stale),
    )


class Output:
    """Where and how an answer is printed."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.out = Console(highlight=False, soft_wrap=True)
        if not self.out.is_terminal:
            # Piped into a file or another program: rows on one line, not folded at 80.
            self.out = Console(highlight=False, soft_wrap=True, width=WIDE)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)

    def document(self, kind: str, data: Any, served: Served | None) -> None:
        """One JSON document: `{"kind", "served", "data"}`, on one line, flushed."""
        doc = {"kind": kind, "served": None if served is None else served.document()}
        doc["data"] = jsonable(data)
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def table(
        self,
        title: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        served: Served | None,
    ) -> None:
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("-" if v is None else str(v) for v in row))
        self.out.print(table)
        if served is not None:
            self.out.print(served.line(), style="dim")

    def fields(self, title: str, pairs: Iterable[tuple[str, Any]], served: Served | None) -> None:
        """A record, one `name: value` line each."""
        self.out.print(title, style="bold")
        for name, value in pairs:
            self.out.print(f"  {name}: {'-' if value is None else value}")
        if served is not None:
            self.out.print(served.line(), style="dim")

    def line(self, text: str, *, style: str | None = None) -> None:
        self.out.print(text, style=style)

    def note(self, text: str) -> None:
        """A message for people, on stderr whatever the format."""
        self.err.print(text)
