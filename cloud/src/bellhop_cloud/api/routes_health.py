"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bellhop_cloud.api.boundary import BoundaryRoute
from bellhop_cloud.api.deps import Audience, RelayDep, access_rule
from bellhop_cloud.api.encoding import json_response
from bellhop_cloud.api.problems import responses
from bellhop_cloud.api.schemas import Health, InfluxLagOut, Readiness

router = APIRouter(tags=["operations"], route_class=BoundaryRoute)
PUBLIC = access_rule(Audience.PUBLIC)
READY_TIMEOUT_S = 2.0
HEAD_OK: dict[int | str, dict[str, Any]] = {200: {"description": "As GET, without a body"}}


@router.get("/healthz", openapi_extra=PUBLIC)
async def healthz() -> Health:
    """The process is up and serving (no dependency is checked)."""
    return Health(status="ok")


# Without the sink the answer stays {"status", "database"}: no null member to explain.
@router.get(
    "/readyz", responses=responses(503), openapi_extra=PUBLIC, response_model_exclude_none=True
)
async def readyz(relay: RelayDep, request: Request) -> Readiness:
    """The database answers within two seconds; a load balancer sends traffic only then.
    With the InfluxDB sink on, its lag too (never a reason to be unready)."""
    await relay.store.ping(within_s=READY_TIMEOUT_S)
    sink = getattr(request.app.state, "influx", None)
    influx = None
    if sink is not None:
        lag = sink.lag()
        influx = InfluxLagOut(
            points_behind=lag.points_behind,
            seconds_behind=round(lag.seconds_behind, 3),
            written=lag.written,
            lost=lag.lost,
            running=lag.running,
        )
    return Readiness(status="ready", database="ok", influx=influx)


# Load balancers probe with HEAD: the same answer as GET, its body dropped by
# api/answers.py. Routes of their own, so each has its own operation id.
@router.head("/healthz", openapi_extra=PUBLIC, response_class=Response, responses=HEAD_OK)
async def healthz_head() -> Response:
    """As GET /healthz, without a body."""
    return json_response((await healthz()).model_dump())


@router.head(
    "/readyz",
    openapi_extra=PUBLIC,
    response_class=Response,
    responses={**HEAD_OK, **responses(503)},
)
async def readyz_head(relay: RelayDep, request: Request) -> Response:
    """As GET /readyz, without a body."""
    return json_response((await readyz(relay, request)).model_dump(exclude_none=True))


@router.get(
    "/metrics",
    openapi_extra=PUBLIC,
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(relay: RelayDep) -> Response:
    return Response(generate_latest(relay.metrics.registry), media_type=CONTENT_TYPE_LATEST)
