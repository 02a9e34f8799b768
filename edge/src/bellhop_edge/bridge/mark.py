"""The sent mark: the highest outbox sequence this gateway ever sent to the relay.

    mark = SentMark.load(directory)
    mark.cover(top_seq)      # before events up to top_seq leave
    mark.value > outbox.last_seq(db)   # at start-up: the database went back in time

A gateway's database restored from an older copy numbers new events again
from where the copy stopped, and the relay would take them for repeats of
events it already applied. The relay's own positions show it only while the
restored outbox is still behind them; a gateway busy before it reconnects
soon writes past them. This mark lives in a file of its own beside the
gateway's key (`bridge/sent-mark`), outside the database a restore replaces,
and is checked at start-up, before anything new is numbered.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bellhop_edge.files import write_atomic

__all__ = ["SentMark"]

_NAME: Final = "sent-mark"


@dataclass(slots=True)
class SentMark:
    path: Path
    value: int = 0

    @classmethod
    def load(cls, directory: Path) -> SentMark:
        """The mark kept in `directory`; 0 when there is none (or it is unreadable)."""
        path = directory / _NAME
        value = 0
        with contextlib.suppress(OSError, ValueError):
            value = max(0, int(path.read_text().strip()))
        return cls(path, value)

    def cover(self, seq: int) -> None:
        """Raise the mark to `seq` before events up to `seq` are sent (a small file
        replaced atomically, once per batch)."""
        if seq > self.value:
            write_atomic(self.path, f"{seq}\n")
            self.value = seq
