"""The device side's at-most-once command bookkeeping: CommandGuard and its verdicts."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bellhop_devices.messages import Ack, AckStatus, Command


class VerdictKind(StrEnum):
    EXECUTE = "execute"
    # Seen before: resend `ack` (None while the first delivery still runs).
    DUPLICATE = "duplicate"
    # Not seen before and past its expires_at: send `ack`, do nothing else.
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    ack: Ack | None = None


EXPIRED_ERROR: Final = "command expired"


class CommandGuard:
    """Device-side at-most-once bookkeeping for commands (sans-I/O).

    Remembers the last `capacity` command ids with the ack each got, least
    recently used first out. A command runs only if its id is not remembered
    and `now_ms < expires_at`. The firmware core mirrors this class; the
    vectors in firmware/vectors/commands.json pin its behaviour.
    """

    __slots__ = ("_capacity", "_device_id", "_seen")

    def __init__(self, device_id: str, *, capacity: int = 64) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._device_id = device_id
        self._capacity = capacity
        self._seen: OrderedDict[str, Ack | None] = OrderedDict()

    def check(self, cmd: Command, now_ms: int) -> Verdict:
        """What to do with `cmd` arriving at `now_ms`. EXECUTE reserves the id;
        call `record` with the ack once the command has run."""
        seen = self._seen
        if cmd.id in seen:
            seen.move_to_end(cmd.id)
            return Verdict(VerdictKind.DUPLICATE, seen[cmd.id])
        if now_ms >= cmd.expires_at:
            ack = Ack(self._device_id, cmd.id, AckStatus.EXPIRED, error=EXPIRED_ERROR)
            self._remember(cmd.id, ack)
            return Verdict(VerdictKind.EXPIRED, ack)
        self._remember(cmd.id, None)
        return Verdict(VerdictKind.EXECUTE)

    def record(self, ack: Ack) -> None:
        """Remember the ack sent for an executed command, for its duplicates."""
        self._remember(ack.id, ack)

    def __len__(self) -> int:
        return len(self._seen)

    def _remember(self, command_id: str, ack: Ack | None) -> None:
        seen = self._seen
        seen[command_id] = ack
        seen.move_to_end(command_id)
        while len(seen) > self._capacity:
            seen.popitem(last=False)
