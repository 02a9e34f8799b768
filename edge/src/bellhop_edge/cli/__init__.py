"""The edge's subcommands of `bellhop`.

edge       `bellhop edge run | check-config | token`
devices    `bellhop devices ...`: provisioning (argument parsers)
devices_commands  what each `bellhop devices` subcommand does
"""

from bellhop_edge.cli.edge import register

__all__ = ["register"]
