"""A stand-in for the running gateway, for `EdgeMetrics` without one: the edge's
collector reads these at collect time.

    metrics = EdgeMetrics(StandInGateway())
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bellhop_edge.core.model import GatewayStatus
from bellhop_edge.store.outbox import Backlog
from bellhop_edge.store.writer_thread import WriterStats

__all__ = ["StandInGateway"]


@dataclass
class _Writer:
    pending: int = 0
    stats: WriterStats = field(default_factory=WriterStats)


class _Store:
    def outbox_backlog(self) -> Backlog:
        return Backlog({1: 0, 2: 0}, None)


@dataclass
class _Commands:
    in_flight: int = 0


@dataclass
class StandInGateway:
    writer: _Writer = field(default_factory=_Writer)
    store: _Store = field(default_factory=_Store)
    commands: _Commands = field(default_factory=_Commands)

    def status(self) -> GatewayStatus:
        # Some of each, so that every labelled series the status feeds is exposed.
        return GatewayStatus(
            hotel_id="h",
            broker_connected=True,
            devices_online=1,
            devices_total=2,
            rejected={"malformed_json": 1},
            accepted=3,
            started_at=0,
        )
