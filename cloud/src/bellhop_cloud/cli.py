"""`bellhop cloud ...`: run the relay or migrate its database.

Only argparse is imported here; the relay loads when a subcommand runs.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    cloud = subparsers.add_parser("cloud", help="the cloud relay")
    commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="serve the REST API (migrates first by default)")
    _config_args(run)
    run.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port (default from config: 8080)")
    run.set_defaults(handler=_run)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _config_args(migrate)
    migrate.set_defaults(handler=_migrate)


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file; BELLHOP_CLOUD_* overrides")
    parser.add_argument("--database-url", help="sqlite:///FILE or postgresql://...")


def _load(args: argparse.Namespace, **extra: Any) -> Any:
    from pathlib import Path

    from bellhop_cloud.config import load_config

    overrides = {k: v for k, v in extra.items() if v is not None}
    if args.database_url:
        overrides["database_url"] = args.database_url
    return load_config(Path(args.config) if args.config else None, **overrides)


def _run(args: argparse.Namespace) -> int:
    import logging
    import sys

    from bellhop_cloud.errors import ConfigError
    from bellhop_cloud.server import run

    try:
        config = _load(args, host=args.host, port=args.port)
    except ConfigError as exc:
        print(f"bellhop cloud: {exc.detail}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    # Its DEBUG lines carry every statement's parameters: e-mails, names, hashes.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    run(config, log_level="debug" if args.verbose else "info")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import sys

    from bellhop_cloud.errors import ConfigError
    from bellhop_cloud.server import run_migrations

    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"bellhop cloud: {exc.detail}", file=sys.stderr)
        return 2
    run_migrations(config)
    print("database is at the latest schema")
    return 0
