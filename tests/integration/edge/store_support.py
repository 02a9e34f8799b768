"""What the edge store's tests share: a fixed "now" and the writes they make."""

from __future__ import annotations

from bellhop_edge.core.commands import CommandRecord, CommandRequest
from bellhop_edge.core.model import (
    CommandResult,
    CommandStatus,
    TelemetryPoint,
)
from bellhop_edge.core.ops import (
    PutCommand,
    PutTelemetry,
)

T0 = 1_800_000_000_000  # a fixed "now" in Unix ms
MIN = 60_000


def points(device: str, ts: int, **metrics: float) -> PutTelemetry:
    return PutTelemetry(tuple(TelemetryPoint(device, m, ts, v) for m, v in metrics.items()))


def command(cid: str, device: str, status: CommandStatus, **result: object) -> PutCommand:
    request = CommandRequest(cid, device, "set_setpoint", {"setpoint": 21}, T0 + MIN, "staff")
    done = None if status is CommandStatus.PENDING else T0 + 5
    outcome = CommandResult(cid, device, status, result or None, None, done)
    return PutCommand(CommandRecord(request, outcome, created_at=T0))
