"""Prometheus metrics of one gateway, in its own registry, served over HTTP when configured.

    metrics = EdgeMetrics(gateway)                  # reads the gateway at every scrape
    server = await MetricsServer.start(metrics, config.metrics)
    task = asyncio.create_task(server.serve())      # until cancelled; closes the port

Nothing here keeps a second copy of a figure the gateway already counts: the
collector reads the same sources as the LAN API's GetGatewayStatus (the hotel's
accepted and rejected counts, the bridge's state, devices online), the writer's
queue and the outbox when Prometheus asks. Only the command latency histogram
is fed as commands finish, since nothing else keeps durations. The exposition
format is prometheus_client's own (`choose_encoder`, text or OpenMetrics as the
scraper asks); the HTTP around it is a few lines of asyncio, so that every
read of the gateway happens on its event loop and the server is an ordinary
task the gateway cancels on shutdown. See docs/edge-gateway.md, "Metrics".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from importlib import metadata
from typing import Final, Protocol

from bellhop.bridge.v1 import bridge_pb2
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from bellhop_edge.bridge.client import BridgeState
from bellhop_edge.config import MetricsConfig
from bellhop_edge.core.commands import CommandRecord
from bellhop_edge.core.model import CommandStatus, GatewayStatus
from bellhop_edge.errors import EdgeError
from bellhop_edge.store.outbox import Backlog
from bellhop_edge.store.writer_thread import WriterStats

__all__ = ["EdgeMetrics", "InfluxSinkLike", "MetricsServer", "Observed"]

log = logging.getLogger(__name__)

# A scrape is one short request; a client that dawdles is cut, and a flood is
# refused rather than allowed to pile reads onto the gateway's event loop.
READ_TIMEOUT_S: Final = 5.0
MAX_REQUEST_BYTES: Final = 8192
MAX_CONNECTIONS: Final = 16
# Commands answer in milliseconds on a LAN; the tail is the timeouts (5 s by default).
COMMAND_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# The bridge's states as label values: short, stable, without spaces.
BRIDGE_STATES: Final = {
    BridgeState.CONNECTING.value: "connecting",
    BridgeState.OPEN.value: "open",
    BridgeState.WAITING.value: "waiting",
    BridgeState.STOPPED.value: "stopped",
    "not enrolled": "not_enrolled",
    "off": "off",
}


class _Writer(Protocol):
    @property
    def pending(self) -> int: ...

    @property
    def stats(self) -> WriterStats: ...


class _Store(Protocol):
    def outbox_backlog(self) -> Backlog: ...


class _Commands(Protocol):
    @property
    def in_flight(self) -> int: ...


class _InfluxLag(Protocol):
    @property
    def points_behind(self) -> int: ...

    @property
    def seconds_behind(self) -> float: ...

    @property
    def written(self) -> int: ...

    @property
    def lost(self) -> int: ...


class InfluxSinkLike(Protocol):
    """The InfluxDB sink's lag, read at each scrape (bellhop_edge.influx.InfluxSink)."""

    def lag(self) -> _InfluxLag: ...


class Observed(Protocol):
    """What a scrape reads: the running gateway (or a stand-in in tests)."""

    def status(self) -> GatewayStatus: ...

    @property
    def writer(self) -> _Writer: ...

    @property
    def store(self) -> _Store: ...

    @property
    def commands(self) -> _Commands: ...


class EdgeMetrics:
    """The gateway's registry: live figures read at scrape time, plus command latency."""

    def __init__(self, gateway: Observed) -> None:
        self.registry = CollectorRegistry()
        self._live = _Live(gateway)
        self.registry.register(self._live)
        self.command_seconds = Histogram(
            "bellhop_edge_command_seconds",
            "Time from a command's creation to its result, by outcome",
            ["status"],
            buckets=COMMAND_BUCKETS,
            registry=self.registry,
        )
        # CPU, memory, open files and start time of the gateway's process.
        ProcessCollector(registry=self.registry)
        self._gateway = gateway
        self.port: int | None = None  # where it is served, once it is (port 0 picks one)

    def watch_influx(self, sink: InfluxSinkLike | None) -> None:
        """Report this InfluxDB sink's lag (docs/influx.md); None: the sink is off."""
        self._live.influx = sink

    def command_finished(self, record: CommandRecord) -> None:
        """A command's result was recorded; a pending one is not finished yet."""
        result = record.result
        if result.status is CommandStatus.PENDING or result.completed_at is None:
            return
        seconds = max(0, result.completed_at - record.created_at) / 1000
        self.command_seconds.labels(result.status.value).observe(seconds)

    async def render(self, accept: str = "") -> tuple[bytes, str]:
        """One scrape: the body and its content type, in the format `accept` asks for."""
        try:
            # Counting the outbox can take a while on a big backlog: off the loop.
            backlog: Backlog | None = await asyncio.to_thread(self._gateway.store.outbox_backlog)
        except EdgeError:
            backlog = None  # the store is closing: the rest is still worth reporting
        encoder, content_type = choose_encoder(accept)
        # No await between here and the encoding: the scrape sees one moment.
        self._live.backlog = backlog
        self._live.read_at = time.time()
        return encoder(self.registry), content_type


class _Live(Collector):
    """Reads the gateway when the registry is collected."""

    def __init__(self, gateway: Observed) -> None:
        self._gateway = gateway
        self.backlog: Backlog | None = None  # read by `EdgeMetrics.render` for each scrape
        self.read_at = 0.0
        self.influx: InfluxSinkLike | None = None
        try:
            self._version = metadata.version("bellhop-edge")
        except metadata.PackageNotFoundError:
            self._version = "unknown"

    def collect(self) -> Iterator[Metric]:
        status = self._gateway.status()
        writer = self._gateway.writer
        stats = writer.stats
        info = InfoMetricFamily("bellhop_edge", "The gateway's hotel and software version")
        info.add_metric([], {"hotel": status.hotel_id, "version": self._version})
        yield info
        yield _gauge(
            "bellhop_edge_broker_connected",
            "1 while the gateway is connected to the hotel's MQTT broker",
            float(status.broker_connected),
        )
        yield CounterMetricFamily(
            "bellhop_edge_messages_accepted",
            "Device messages accepted (decoded, from a registered device, in time)",
            value=status.accepted,
        )
        rejected = CounterMetricFamily(
            "bellhop_edge_messages_rejected",
            "Device messages rejected, by reason (malformed, unknown_device, duplicate...)",
            labels=["reason"],
        )
        for reason, count in sorted(status.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield _gauge(
            "bellhop_edge_devices_online",
            "Registered devices currently online",
            status.devices_online,
        )
        yield _gauge("bellhop_edge_devices_registered", "Registered devices", status.devices_total)
        yield _gauge(
            "bellhop_edge_writer_queue_depth",
            "Writes handed to the store's writer and not yet committed",
            writer.pending,
        )
        yield CounterMetricFamily(
            "bellhop_edge_writer_ops_committed", "Writes committed", value=stats.committed
        )
        yield CounterMetricFamily(
            "bellhop_edge_writer_ops_failed", "Writes that failed", value=stats.failed
        )
        yield CounterMetricFamily(
            "bellhop_edge_writer_batches", "Transactions committed", value=stats.batches
        )
        yield _gauge(
            "bellhop_edge_commands_in_flight",
            "Commands sent and waiting for the device's answer",
            self._gateway.commands.in_flight,
        )
        yield from self._bridge(status)
        if self.influx is not None:
            yield from _influx(self.influx.lag())

    def _bridge(self, status: GatewayStatus) -> Iterator[Metric]:
        current = BRIDGE_STATES.get(status.cloud_bridge, "unknown")
        state = GaugeMetricFamily(
            "bellhop_edge_bridge_state",
            "1 for the bridge's current state, 0 for the others",
            labels=["state"],
        )
        for name in BRIDGE_STATES.values():
            state.add_metric([name], float(name == current))
        yield state
        yield _gauge(
            "bellhop_edge_bridge_connected",
            "1 while the bridge to the cloud relay is open",
            float(current == "open"),
        )
        backlog = GaugeMetricFamily(
            "bellhop_edge_outbox_backlog",
            "Events the cloud relay has not acknowledged yet, by lane",
            labels=["lane"],
        )
        lag = GaugeMetricFamily(
            "bellhop_edge_bridge_lag_seconds",
            "Age of the oldest event the cloud relay has not acknowledged (0: none)",
        )
        if self.backlog is not None:
            for lane, count in sorted(self.backlog.events.items()):
                name = _lane_name(lane)
                backlog.add_metric([name], count)
            oldest = self.backlog.oldest_ms
            lag.add_metric([], 0.0 if oldest is None else max(0.0, self.read_at - oldest / 1000))
        yield backlog
        yield lag


def _influx(lag: _InfluxLag) -> Iterator[Metric]:
    """Only while the sink runs: a gateway without InfluxDB has no such series."""
    yield _gauge(
        "bellhop_edge_influx_points_behind",
        "Applied points and records not yet accepted by InfluxDB",
        lag.points_behind,
    )
    yield _gauge(
        "bellhop_edge_influx_seconds_behind",
        "Age of the oldest applied point or record not yet accepted by InfluxDB (0: none)",
        lag.seconds_behind,
    )
    yield CounterMetricFamily(
        "bellhop_edge_influx_written",
        "Points and records InfluxDB accepted since the gateway started",
        value=lag.written,
    )
    yield CounterMetricFamily(
        "bellhop_edge_influx_lost",
        "Points and records that never reached InfluxDB (deleted first, or refused)",
        value=lag.lost,
    )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class MetricsServer:
    """GET /metrics on the configured address; one task serves it until cancelled."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self._metrics = metrics
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    @classmethod
    async def start(cls, metrics: EdgeMetrics, config: MetricsConfig) -> MetricsServer:
        """Bind now, so that a taken port stops the gateway's start with a clear error."""
        self = cls(metrics)
        self._server = await asyncio.start_server(
            self._serve_one, config.host, config.port, limit=MAX_REQUEST_BYTES
        )
        self.port = metrics.port = self._server.sockets[0].getsockname()[1]
        log.info("Prometheus metrics on http://%s:%d/metrics", config.host, self.port)
        return self

    async def serve(self) -> None:
        """Serve until cancelled, then close the port and every connection still open."""
        assert self._server is not None, "start() first"
        try:
            await asyncio.get_running_loop().create_future()  # accepting until cancelled
        finally:
            # Connections first: from Python 3.12 wait_closed waits for them.
            self._server.close()
            for task in self._connections:
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if len(self._connections) <= MAX_CONNECTIONS:
                await self._answer(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the scraper went away or dawdled: nothing to answer
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _respond(writer, 431, b"request too large\n")
            return
        request, *lines = head.decode("latin-1").split("\r\n")
        method, _, rest = request.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if path != "/metrics":
            await _respond(writer, 404, b"not found: try /metrics\n")
            return
        if method not in ("GET", "HEAD"):
            await _respond(writer, 405, b"GET or HEAD\n", extra="Allow: GET, HEAD\r\n")
            return
        accept = ""
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "accept":
                accept = value.strip()
        body, content_type = await self._metrics.render(accept)
        await _respond(writer, 200, body, content_type=content_type, head=method == "HEAD")


_REASONS: Final = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
    extra: str = "",
    head: bool = False,
) -> None:
    header = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    writer.write(header.encode("latin-1") + (b"" if head else body))
    await writer.drain()


def _lane_name(lane: int) -> str:
    """ "priority", "bulk": the outbox's lanes as the bridge protocol names them."""
    for value in bridge_pb2.Lane.values():
        if value == lane:
            return bridge_pb2.Lane.Name(value).removeprefix("LANE_").lower()
    return str(lane)
