"""The FastAPI application of the relay."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import FastAPI

from bellhop_cloud import __version__
from bellhop_cloud.api import (
    contract,
    problems,
    routes_auth,
    routes_commands,
    routes_desired,
    routes_events,
    routes_gateways,
    routes_health,
    routes_hotels,
    routes_notifications,
    routes_orgs,
    routes_sync,
)
from bellhop_cloud.api.answers import AnswerHeaders
from bellhop_cloud.api.proxies import ForwardedHeaders
from bellhop_cloud.bridge.endpoint import BridgeEndpoint
from bellhop_cloud.bridge.retention import Retention
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.influx import RelaySink
from bellhop_cloud.metrics import MetricsMiddleware, RelayMetrics
from bellhop_cloud.notify.worker import Notifier
from bellhop_cloud.relay import Relay

DESCRIPTION = """\
Multi-tenant relay between Bellhop hotel gateways and remote managers.

Errors are `application/problem+json` with a stable `code`. Each operation's
`x-bellhop-access` says who may call it (see docs/cloud-permissions.md).
"""

# Every module with REST routes, in the order they are matched (a test checks
# that each of their routes goes through the boundary).
ROUTE_MODULES = (
    routes_hotels,
    routes_sync,
    routes_commands,
    routes_desired,
    routes_events,
    routes_auth,
    routes_orgs,
    routes_gateways,
    routes_notifications,
    routes_health,
)


def create_app(config: RelayConfig, *, relay: Relay | None = None) -> FastAPI:
    """Build the app. Given `relay`, the caller owns it; otherwise the app opens
    one at startup and closes it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if relay is not None:
            yield
            return
        owned = await Relay.open(config, metrics=metrics)
        app.state.relay = owned
        # Everything loaded so far lives as long as the process; keeping it out
        # of the collector's full passes removes most of their pause.
        gc.freeze()
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(Retention(owned.store, config).running())
                await stack.enter_async_context(owned.downlink.running())
                if config.notify_enabled:
                    notifier = Notifier(owned.store, config, owned.metrics)
                    await stack.enter_async_context(notifier.running())
                app.state.influx = await stack.enter_async_context(
                    RelaySink.running(config, owned.store, owned.metrics)
                )
                if config.bridge_enabled:
                    endpoint = BridgeEndpoint(owned)
                    host = config.bridge_host or config.host
                    await stack.enter_async_context(endpoint.serving(host, config.bridge_port))
                    app.state.bridge = endpoint
                yield
        finally:
            await owned.close()

    app = FastAPI(
        title="Bellhop cloud relay",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    if relay is not None:
        app.state.relay = relay
    metrics = relay.metrics if relay is not None else RelayMetrics()
    problems.install(app)
    contract.install(app)
    # Routes are matched in order; the hot device reads go first.
    routes_hotels.add_device_page(app)
    for module in ROUTE_MODULES:
        app.include_router(module.router)
    # Added last is outermost: metrics see the status of every answer, 500s included.
    app.add_middleware(problems.UnexpectedErrors)
    app.add_middleware(AnswerHeaders)  # 500s included
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if config.trusted_proxies:
        app.add_middleware(ForwardedHeaders, trusted=config.trusted_proxies)
    return app
