"""The gateway's Prometheus metrics carry the InfluxDB sink's lag, read at each scrape,
and only while a sink runs."""

from __future__ import annotations

from dataclasses import dataclass

from bellhop_edge.influx import InfluxLag
from bellhop_edge.metrics import EdgeMetrics
from prometheus_client.parser import text_string_to_metric_families

from tests.support.edge_metrics import StandInGateway


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
    metrics = EdgeMetrics(StandInGateway())
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
