"""The gateway as a service: run until SIGTERM or SIGINT, then stop cleanly."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from bellhop_edge.config import EdgeConfig
from bellhop_edge.gateway import Gateway
from bellhop_edge.influx import InfluxSink
from bellhop_edge.notify import LocalNotifier

__all__ = ["run"]

log = logging.getLogger(__name__)


async def run(config: EdgeConfig) -> None:
    """Run a gateway until SIGTERM or SIGINT, then stop it cleanly (see `Gateway.close`)."""
    loop = asyncio.get_running_loop()
    # The InfluxDB sink and the local notifications (off unless configured) stop before
    # the gateway closes its store.
    async with (
        Gateway(config) as gateway,
        InfluxSink.running(config) as sink,
        LocalNotifier.running(config),
    ):
        gateway.metrics.watch_influx(sink)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, gateway.request_stop)
        try:
            # Start-up objects (config, registry, protobuf descriptors) live for the
            # whole run: keep them out of the collector's way (fewer, shorter pauses).
            gc.collect()
            gc.freeze()
            await gateway.wait_stop_requested()
            log.info("stopping: committing and acknowledging what was accepted")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
