"""The relay under a real uvicorn server, in a thread, on a free loopback port.

Configured by `bellhop_cloud.server.uvicorn_config`, as `bellhop cloud run`
does, so what the server itself does to a request (forwarded headers, HEAD)
is part of what the tests see.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import uvicorn
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.server import uvicorn_config

from tests.support.mosquitto import free_port

__all__ = ["free_port", "serving"]

STARTUP_S = 20.0


@contextlib.contextmanager
def serving(config: RelayConfig) -> Iterator[str]:
    """Serve `config` (its port is replaced by a free one); yield the base URL."""
    config = config.model_copy(
        update={"host": "127.0.0.1", "port": free_port(), "bridge_port": free_port()}
    )
    server = uvicorn.Server(uvicorn_config(config, log_level="warning"))
    thread = threading.Thread(target=server.run, name="relay-server", daemon=True)
    thread.start()
    try:
        ready = threading.Event()
        # `started` turns true once the socket listens; wait on it, bounded.
        for _ in range(int(STARTUP_S / 0.01)):
            if server.started or not thread.is_alive():
                break
            ready.wait(0.01)
        if not server.started:
            raise RuntimeError("the relay did not start")
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=STARTUP_S)
