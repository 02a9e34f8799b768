"""Prometheus metrics of one relay, in its own registry (served at /metrics)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bellhop_cloud_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bellhop_cloud_http_request_seconds",
            "Time to answer an HTTP request",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.problems = Counter(
            "bellhop_cloud_problems",
            "Error responses, by stable problem code (bad input, auth, permission...)",
            ["code"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "bellhop_cloud_auth_failures",
            "Rejected credentials and tokens, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.login_throttled = Counter(
            "bellhop_cloud_login_throttled",
            "Login attempts refused by the rate limiter",
            registry=self.registry,
        )
        self.registration_throttled = Counter(
            "bellhop_cloud_registration_throttled",
            "Sign-ups refused by the rate limiter",
            registry=self.registry,
        )
        self.gateways_enrolled = Counter(
            "bellhop_cloud_gateways_enrolled",
            "Gateways that exchanged an enrolment token for an identity",
            registry=self.registry,
        )
        # The InfluxDB sink (docs/influx.md); zero while it is off.
        self.influx_points_behind = Gauge(
            "bellhop_cloud_influx_points_behind",
            "Applied points and device events not yet accepted by InfluxDB",
            registry=self.registry,
        )
        self.influx_seconds_behind = Gauge(
            "bellhop_cloud_influx_seconds_behind",
            "Age of the oldest applied point or device event not yet accepted by InfluxDB",
            registry=self.registry,
        )
        self.influx_lost = Gauge(
            "bellhop_cloud_influx_lost",
            "Points and device events that never reached InfluxDB (deleted first, or refused)",
            registry=self.registry,
        )
        self.influx_written = Gauge(
            "bellhop_cloud_influx_written",
            "Points and device events InfluxDB accepted from this relay's sink",
            registry=self.registry,
        )
        # The notification worker (docs/notifications.md): this node's sends, by the
        # channel's scheme (a closed set: no secret, no per-hotel series).
        self.notify_sent = Counter(
            "bellhop_cloud_notifications_sent",
            "Notifications a channel accepted from this node, by scheme",
            ["scheme"],
            registry=self.registry,
        )
        self.notify_failed = Counter(
            "bellhop_cloud_notifications_failed",
            "Notification sends that failed on this node (retried or given up), by scheme",
            ["scheme"],
            registry=self.registry,
        )
        self.notify_unknown = Counter(
            "bellhop_cloud_notifications_unknown",
            "Sends found interrupted (a node died mid-send) and settled by this node;"
            " never sent again on that channel",
            registry=self.registry,
        )
        self.notify_queue = Gauge(
            "bellhop_cloud_notifications_queue",
            "Notification rows waiting across all nodes: due, sending, queued for later",
            ["state"],
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: RelayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are client-chosen; one label keeps the series bounded.
    return path if isinstance(path, str) else "unmatched"
