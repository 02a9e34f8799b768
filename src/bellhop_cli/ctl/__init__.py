"""`bellhop ctl`: run a hotel from the command line, through the SDK (LAN first, else cloud).

Only argparse is imported here, so that `bellhop --help` stays fast; the SDK, httpx,
grpc and rich are imported when a `ctl` command runs (`runner.py`).

    session.py   where the login is kept between invocations (0600, never the password)
    runner.py    the client from options and session, signals, errors and exit codes
    commands.py  one coroutine per subcommand
    output.py    tables, JSON documents, and who served each answer
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

__all__ = ["register"]


def _common(parser: argparse.ArgumentParser, *, leaf: bool) -> None:
    """Options every ctl command takes, before or after its name. On the subcommands
    their default is SUPPRESS, so that `ctl --json hotels` is not undone by `hotels`."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if leaf else value

    parser.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable JSON"
    )
    parser.add_argument(
        "--lan", metavar="HOST:PORT", default=default(None), help="the gateway's LAN API"
    )
    parser.add_argument("--cloud", metavar="URL", default=default(None), help="the relay's URL")
    parser.add_argument(
        "--via",
        choices=("auto", "lan", "cloud"),
        default=default("auto"),
        help="which path to use (default: the LAN when the gateway answers, else the cloud)",
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        metavar="S",
        default=default(10.0),
        help="seconds a call may take (default 10)",
    )


def register(subparsers: Any) -> None:
    ctl = subparsers.add_parser(
        "ctl",
        help="run a hotel: devices, commands, alerts, live events (LAN first, else cloud)",
        description="Exit codes: 0 ok, 1 other error, 2 usage, 3 unauthenticated (or not "
        "logged in), 4 forbidden, 5 not found, 6 invalid request, 7 conflict, 8 gateway "
        "offline, 9 unreachable or unavailable, 10 command timed out, 11 command rejected, "
        "12 rate limited, 13 server error, 14 unsupported on this path, 130 Ctrl-C, "
        "143 SIGTERM.",
    )
    _common(ctl, leaf=False)
    sub = ctl.add_subparsers(dest="ctl_command", metavar="COMMAND", required=True)

    def leaf(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
        _common(parser, leaf=True)
        parser.set_defaults(handler=_run, ctl_command=name)
        return parser

    login = leaf("login", "log in (cloud account, or a LAN-only token) and save the session")
    login.add_argument("--email", help="the cloud account (prompted for if missing)")
    login.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password (or LAN token) from stdin; else $BELLHOP_PASSWORD "
        "($BELLHOP_LAN_TOKEN), else a prompt",
    )
    login.add_argument(
        "--lan-token",
        action="store_true",
        help="log in with a LAN-only staff token instead (needs --lan)",
    )
    leaf("logout", "end the session and forget it")
    leaf("hotels", "the hotels this login sees")
    leaf("rooms", "a hotel's rooms").add_argument("hotel")
    devices = leaf("devices", "a hotel's devices with their reported state")
    devices.add_argument("hotel")
    devices.add_argument("--room", help="only this room's")

    device = sub.add_parser("device", help="one device")
    device_sub = device.add_subparsers(dest="device_command", metavar="COMMAND", required=True)
    show: argparse.ArgumentParser = device_sub.add_parser(
        "show", help="reported, desired, delta and freshness of one device"
    )
    _common(show, leaf=True)
    show.set_defaults(handler=_run, ctl_command="device show")
    show.add_argument("hotel")
    show.add_argument("device")

    _writes(leaf)
    _reads(leaf)


Leaf = Callable[[str, str], argparse.ArgumentParser]


def _writes(leaf: Leaf) -> None:
    command = leaf("command", "send a command to one device and wait for its result")
    command.add_argument("hotel")
    command.add_argument("device")
    command.add_argument("name")
    _params(command)
    command.add_argument("--id", dest="command_id", help="the command id (default: a new one)")
    command.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (10)")
    command.add_argument(
        "--queue",
        action="store_true",
        help="do not wait: the cloud queues it while the gateway is away (see --ttl)",
    )
    command.add_argument("--ttl", type=float, help="with --queue: seconds it may wait to be sent")

    fleet = leaf("fleet", "send one command to many devices, with progress")
    fleet.add_argument("hotel")
    fleet.add_argument("name")
    target = fleet.add_mutually_exclusive_group(required=True)
    target.add_argument("--room", action="append", help="devices of this room (repeatable)")
    target.add_argument("--floor", type=int, action="append", help="devices on this floor")
    target.add_argument("--kind", action="append", help="devices of this kind")
    target.add_argument("--device", action="append", help="this device")
    target.add_argument("--all", action="store_true", help="every registered device")
    _params(fleet)
    fleet.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (10)")

    ack = leaf("ack", "acknowledge an alert")
    ack.add_argument("hotel")
    ack.add_argument("alert")
    ack.add_argument("--note", help="a note kept with the acknowledgement")


def _reads(leaf: Leaf) -> None:
    alerts = leaf("alerts", "a hotel's alerts")
    alerts.add_argument("hotel")
    alerts.add_argument("--active", action="store_true", help="only those not cleared")
    alerts.add_argument("--limit", type=int, default=100)

    follow = leaf("follow", "live events until Ctrl-C; gaps are shown")
    follow.add_argument("hotel")
    follow.add_argument("--room", help="only this room's")

    history = leaf("history", "a device's telemetry history")
    history.add_argument("hotel")
    history.add_argument("device")
    history.add_argument("--metric", required=True, help="e.g. temperature")
    history.add_argument("--since", help="ISO time or an age (30m, 2h, 1d)")
    history.add_argument("--until", help="ISO time or an age")
    history.add_argument("--limit", type=int, default=100)


def _params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="a parameter; V is JSON if it parses (true, 21.5, null), else a string",
    )


def _run(args: argparse.Namespace) -> int:
    from bellhop_cli.ctl.runner import main

    return main(args)
