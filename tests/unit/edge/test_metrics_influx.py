"""The gateway's Prometheus metrics carry the InfluxDB sink's lag, read at each scrape,
and only while a sink runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from bellhop_edge.core.model import GatewayStatus
from bellhop_edge.influx import InfluxLag
from bellhop_edge.metrics import EdgeMetrics
from bellhop_edge.store.outbox import Backlog
from bellhop_edge.store.writer_thread import WriterStats
from prometheus_client.parser import text_string_to_metric_families


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
class _Gateway:
    writer: _Writer = field(default_factory=_Writer)
    store: _Store = field(default_factory=_Store)
    commands: _Commands = field(default_factory=_Commands)

    def status(self) -> GatewayStatus:
        return GatewayStatus(
            hotel_id="h",
            broker_connected=True,
            devices_online=0,
            devices_total=0,
            rejected={},
            accepted=0,
            started_at=0,
        )


@dataclass
class _Sink:
    now: InfluxLag

    def lag(self) -> InfluxLag:
        return self.now


async def scrape(metrics: EdgeMetrics) -> dict[str, float]:
    body, _ = await metrics.render()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name.startswith("bellhop_edge_influx")
    }


async def test_the_sink_lag_is_read_at_each_scrape() -> None:
    metrics = EdgeMetrics(_Gateway())
    assert await scrape(metrics) == {}  # no sink: no series
    sink = _Sink(InfluxLag(points_behind=1200, seconds_behind=42.5, written=7, lost=3, failures=2))
    metrics.watch_influx(sink)
    assert await scrape(metrics) == {
        "bellhop_edge_influx_points_behind": 1200,
        "bellhop_edge_influx_seconds_behind": 42.5,
        "bellhop_edge_influx_written_total": 7,
        "bellhop_edge_influx_lost_total": 3,
    }
    sink.now = InfluxLag(points_behind=0, seconds_behind=0.0, written=1207, lost=3, failures=0)
    assert (await scrape(metrics))["bellhop_edge_influx_points_behind"] == 0
    assert (await scrape(metrics))["bellhop_edge_influx_written_total"] == 1207
