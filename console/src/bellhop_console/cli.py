"""`bellhop console`: serve the staff console (argparse only at import, for a fast --help)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "console",
        help="serve the staff console: rooms, devices and alerts in a browser",
        description="A web console over the SDK: the hotel's gateway on the LAN when it "
        "answers, the cloud relay otherwise. Give --cloud, --lan or both.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8480", help="host:port (127.0.0.1:8480)")
    parser.add_argument("--cloud", metavar="URL", help="the relay's URL (accounts sign in here)")
    parser.add_argument("--lan", metavar="HOST:PORT", help="the gateway's LAN API")
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="and this private key (PEM)")
    parser.add_argument(
        "--secure-cookies",
        choices=("auto", "yes", "no"),
        default="auto",
        help="Secure cookies: auto = exactly when serving TLS; yes behind a TLS proxy",
    )
    parser.add_argument(
        "--session-hours", type=float, default=8.0, help="a session's longest life (8)"
    )
    parser.add_argument("--call-timeout", type=float, default=10.0, help="seconds per SDK call")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from bellhop_console.serve import serve

    return serve(args)
