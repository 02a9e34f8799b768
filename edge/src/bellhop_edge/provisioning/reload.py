"""Telling the broker to re-read its password file and ACL.

`Reload` is any callable that does it: `SignalReload` sends SIGHUP to the
pid in Mosquitto's `pid_file`, `CommandReload` runs the operator's command
(`systemctl reload mosquitto`). Both raise ReloadFailedError, whose message
says the files were written, so the operator knows what is left to do.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bellhop_edge.errors import InvalidDeviceError, ReloadFailedError

__all__ = ["CommandReload", "Reload", "SignalReload"]

Reload = Callable[[], None]
"""Tells the broker to re-read its password file and ACL; raises ReloadFailedError."""


@dataclass(frozen=True, slots=True)
class SignalReload:
    """SIGHUP to the pid in Mosquitto's `pid_file` (the user must be allowed to signal it)."""

    pid_file: Path

    def __call__(self) -> None:
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError) as exc:
            raise ReloadFailedError(
                f"files written, but the broker was not reloaded ({self.pid_file}: {exc}); "
                "they take effect at its next reload or restart"
            ) from None


@dataclass(frozen=True, slots=True)
class CommandReload:
    """A command such as `systemctl reload mosquitto`, run without a shell."""

    argv: tuple[str, ...]
    timeout_s: float = 30.0

    @classmethod
    def parse(cls, command: str) -> CommandReload:
        argv = tuple(shlex.split(command))
        if not argv:
            raise InvalidDeviceError("the reload command is empty")
        return cls(argv)

    def __call__(self) -> None:
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                self.argv, capture_output=True, text=True, timeout=self.timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ReloadFailedError(
                f"files written, but `{shlex.join(self.argv)}`: {exc}"
            ) from None
        if done.returncode != 0:
            raise ReloadFailedError(
                f"files written, but `{shlex.join(self.argv)}` exited {done.returncode}: "
                f"{done.stderr.strip()[:500]}"
            )
