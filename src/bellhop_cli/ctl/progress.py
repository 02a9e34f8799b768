"""A fleet command's progress on stderr: a rich bar for people, plain lines with --json."""

from __future__ import annotations

from types import TracebackType

from bellhop_sdk import Command
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from bellhop_cli.ctl.output import Output

__all__ = ["FleetProgress"]


class FleetProgress:
    """Advanced once per device as its result arrives (`done` is the SDK's callback)."""

    def __init__(self, out: Output, name: str, total: int | None) -> None:
        self.out = out
        self.name = name
        self.total = total
        self.count = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> FleetProgress:
        if not self.out.as_json:
            self._bar = Progress(
                TextColumn("fleet {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[last]}"),
                console=self.out.err,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.name, total=self.total, last="")
        return self

    def done(self, command: Command) -> None:
        self.count += 1
        last = f"{command.device_id} {command.status.value}"
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, last=last)
        else:
            total = "?" if self.total is None else str(self.total)
            self.out.note(f"progress {self.count}/{total} {last}")

    def finish(self, targeted: int) -> None:
        self.total = targeted
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, total=targeted, completed=self.count)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
