"""The edge's subcommands of `bellhop`.

edge       `bellhop edge run | check-config | token`
backup     `bellhop edge backup | restore`
config_file  the configuration file as every `bellhop edge` command reads it
devices    `bellhop devices ...`: provisioning (argument parsers)
devices_commands  what each `bellhop devices` subcommand does
"""

from bellhop_edge.cli.edge import register

__all__ = ["register"]
