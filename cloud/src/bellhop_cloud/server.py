"""Run the relay under uvicorn, and the `migrate` step on its own."""

from __future__ import annotations

import asyncio

import uvicorn

from bellhop_cloud.app import create_app
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.store import Store

GRACEFUL_SHUTDOWN_S = 10


def uvicorn_config(config: RelayConfig, *, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        host=config.host,
        port=config.port,
        lifespan="on",
        access_log=False,  # the audit log and /metrics say who did what, at less cost
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
        # The relay reads forwarded headers itself, and only from trusted_proxies
        # (api/proxies.py); uvicorn's own handling believes any loopback peer.
        proxy_headers=False,
    )


def run(config: RelayConfig, *, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM."""
    uvicorn.Server(uvicorn_config(config, log_level=log_level)).run()


async def migrate(config: RelayConfig) -> None:
    store = Store.open(config)
    try:
        await store.migrate()
    finally:
        await store.close()


def run_migrations(config: RelayConfig) -> None:
    asyncio.run(migrate(config))
