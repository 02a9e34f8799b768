"""Running the console under uvicorn until SIGTERM or SIGINT.

uvicorn handles both signals: it stops accepting, lets requests finish for at
most `GRACE_S` (open live streams end when the hub closes), then runs the
app's shutdown, which ends every session's SDK client.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Final

from bellhop_console.config import ConfigError, ConsoleConfig

__all__ = ["config_from", "serve"]

GRACE_S: Final = 5


def config_from(args: argparse.Namespace) -> ConsoleConfig:
    secure = {"auto": None, "yes": True, "no": False}[args.secure_cookies]
    return ConsoleConfig(
        listen=args.listen,
        cloud_url=args.cloud,
        lan_target=args.lan,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        cookie_secure=secure,
        session_ttl_s=args.session_hours * 3600,
        call_timeout_s=args.call_timeout,
    ).validate()


def serve(args: argparse.Namespace) -> int:
    try:
        config = config_from(args)
    except ConfigError as exc:
        print(f"bellhop console: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from bellhop_console.app import create_app

    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    host, port = config.host_port
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            ssl_certfile=str(config.tls_cert) if config.tls_cert else None,
            ssl_keyfile=str(config.tls_key) if config.tls_key else None,
            timeout_graceful_shutdown=GRACE_S,
            log_level="warning",
            proxy_headers=False,
            server_header=False,
        )
    )
    scheme = "https" if config.tls else "http"
    print(f"bellhop console: serving on {scheme}://{config.listen}", file=sys.stderr, flush=True)
    server.run()
    return 0
