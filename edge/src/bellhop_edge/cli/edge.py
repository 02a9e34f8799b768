"""`bellhop edge …`: run the gateway, check its configuration, mint staff tokens.

Heavy imports stay inside the handlers, so `bellhop --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from bellhop_edge.cli.config_file import load_config_or_exit


def register(subparsers: Any) -> None:
    edge = subparsers.add_parser("edge", help="run and manage the hotel's edge gateway")
    commands = edge.add_subparsers(dest="edge_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the gateway for one hotel")
    run.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate a configuration file and print it")
    check.add_argument("--config", type=Path, required=True)
    check.set_defaults(handler=_check)

    enrol = commands.add_parser(
        "enrol", help="enrol this gateway with the cloud relay (once; keeps its key in DATA_DIR)"
    )
    enrol.add_argument("--config", type=Path, required=True)
    enrol.add_argument("--relay", required=True, help="the relay's base URL, https://host[:port]")
    enrol.add_argument(
        "--token",
        required=True,
        help="the one-time enrolment token from the relay; '-' reads it from standard input",
    )
    enrol.add_argument("--name", default=None, help="how the relay lists it (default: hotel id)")
    enrol.set_defaults(handler=_enrol)

    token = commands.add_parser("token", help="staff tokens verified by the gateway itself")
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    create = token_commands.add_parser("create", help="mint a token (printed once, stored hashed)")
    create.add_argument("--config", type=Path, required=True)
    create.add_argument("--name", required=True, help="who the token is for")
    create.add_argument(
        "--role", default="staff", choices=["viewer", "staff", "manager", "admin", "owner"]
    )
    create.set_defaults(handler=_token_create)
    revoke = token_commands.add_parser("revoke", help="revoke every token of a name")
    revoke.add_argument("--config", type=Path, required=True)
    revoke.add_argument("--name", required=True)
    revoke.set_defaults(handler=_token_revoke)

    from bellhop_edge.cli import backup, devices

    backup.register(commands)

    devices.register(subparsers)


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from bellhop_edge.service import run

    config = load_config_or_exit(args.config)
    logging.basicConfig(
        level="DEBUG" if args.verbose else config.log_level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=_loop_factory()) as runner,
    ):
        runner.run(run(config))
    return 0


def _loop_factory() -> Any:
    """uvloop where it is installed: lower command latency, same semantics."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _check(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    print(config.model_dump_json(indent=2, exclude={"mqtt": {"password"}}))
    return 0


def _enrol(args: argparse.Namespace) -> int:
    from bellhop_edge.bridge.identity import enrol
    from bellhop_edge.errors import EdgeError

    config = load_config_or_exit(args.config)
    # '-': from standard input, so the token stays out of the process list and shell history.
    token = sys.stdin.readline().strip() if args.token == "-" else str(args.token)  # noqa: S105
    try:
        identity = enrol(
            config.data_dir,
            relay_url=args.relay,
            token=token,
            name=args.name or config.hotel_id,
        )
    except EdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"enrolled as gateway {identity.gateway_id} of hotel {identity.hotel_id}")
    print(f"key and identity kept in {identity.directory(config.data_dir)} (mode 0600)")
    return 0


def _tokens(config: Any) -> Any:
    from bellhop_edge.auth import LocalTokens

    return LocalTokens(config.tokens_path)


def _token_create(args: argparse.Namespace) -> int:
    from bellhop_edge.auth import Role

    config = load_config_or_exit(args.config)
    token = _tokens(config).create(args.name, Role.parse(args.role))
    print(token)
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    removed = _tokens(load_config_or_exit(args.config)).revoke(args.name)
    print(f"revoked {removed} token(s) of {args.name}")
    return 0 if removed else 1
