"""Run the relay under uvicorn, and the `migrate` step on its own."""

from __future__ import annotations

import asyncio
import signal
from types import FrameType

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
    """Serve until SIGINT/SIGTERM, then stop cleanly and exit with status 0."""
    # uvicorn shuts down gracefully on the signal, restores the handlers it found and
    # raises the signal again; these turn that into a normal exit, as a supervisor
    # expects of a clean stop (the gateway does the same).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.Server(uvicorn_config(config, log_level=log_level)).run()


def _exit_cleanly(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


async def migrate(config: RelayConfig) -> None:
    store = Store.open(config)
    try:
        await store.migrate()
    finally:
        await store.close()


def run_migrations(config: RelayConfig) -> None:
    asyncio.run(migrate(config))
