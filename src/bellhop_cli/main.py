"""`bellhop`: one command for every component.

Each component contributes its subcommands through a `register(subparsers)`
function in its own `cli` module. Those modules import only argparse at the
top, so `bellhop --help` stays fast and a missing component only disables
its own subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# (module, what it adds) in the order they appear in `bellhop --help`.
COMPONENTS = (
    ("bellhop_cli.demo", "demo"),
    ("bellhop_edge.cli", "edge, devices"),
    ("bellhop_devices.cli", "sim"),
    ("bellhop_cloud.cli", "cloud"),
    ("bellhop_cli.ctl", "ctl"),
    ("bellhop_console.cli", "console"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bellhop", description="Offline-first platform for running hotel rooms."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name, _ in COMPONENTS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue  # the component is not installed
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = args.handler
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
