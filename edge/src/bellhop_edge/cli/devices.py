"""`bellhop devices …`: the argument parsers of device provisioning.

Only argparse is imported here, so `bellhop --help` stays fast: each
subcommand's handler imports `devices_commands` (the provisioning code and
its wiring) when it runs. File locations default to places under the
gateway's `data_dir` (docs/provisioning.md); exit status 0 on success, 1 when
the operation failed or the broker could not be reloaded, 2 on bad usage.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

KINDS = (
    "thermostat",
    "light",
    "door_lock",
    "door_sensor",
    "environment_sensor",
    "gas_sensor",
)

Handler = Callable[[argparse.Namespace], int]


def _handler(command: str) -> Handler:
    """The handler of `command`, importing `devices_commands` only when it runs."""

    def handle(args: argparse.Namespace) -> int:
        from bellhop_edge.cli.devices_commands import HANDLERS

        return HANDLERS[command](args)

    return handle


def register(subparsers: Any) -> None:
    devices = subparsers.add_parser(
        "devices", help="provision devices: registry, broker credentials, ACL, TLS, bundles"
    )
    commands = devices.add_subparsers(dest="devices_command", metavar="COMMAND", required=True)

    ca = commands.add_parser("ca", help="create the hotel CA and the broker's TLS certificate")
    _common(ca)
    ca.add_argument(
        "--hosts",
        default="",
        help="comma-separated names and addresses devices use for the broker"
        " (localhost and 127.0.0.1 are always added)",
    )
    ca.add_argument("--days", type=int, default=None, help="server certificate validity")
    ca.add_argument(
        "--use-ca",
        nargs=2,
        metavar=("CERT", "KEY"),
        type=Path,
        help="sign with the operator's own CA instead of creating one (its key is not copied)",
    )
    ca.add_argument("--plain-port", type=int, default=1883, help="plain MQTT, on loopback only")
    ca.add_argument("--tls-port", type=int, default=8883, help="MQTT over TLS, on the LAN")
    ca.add_argument(
        "--tls-bind",
        default="0.0.0.0",  # noqa: S104 - devices reach the broker over the hotel LAN
        help="address of the TLS listener (default: all)",
    )
    ca.add_argument(
        "--persistence-dir",
        type=Path,
        default=None,
        help="keep queued messages across broker restarts here (default: none)",
    )
    ca.add_argument(
        "--mosquitto-user", default=None, help="user Mosquitto drops to when started as root"
    )
    ca.set_defaults(handler=_handler("ca"))

    _register_accounts(commands)


def _register_accounts(commands: Any) -> None:
    gateway = commands.add_parser("gateway", help="create the gateway's own broker account")
    _common(gateway)
    _reload_options(gateway)
    gateway.add_argument(
        "--secret-file",
        type=Path,
        default=None,
        help="where its password goes (default: mqtt.password_file of the config,"
        " else DATA_DIR/broker/gateway.secret)",
    )
    gateway.add_argument("--rotate", action="store_true", help="replace an existing password")
    gateway.set_defaults(handler=_handler("gateway"))

    add = commands.add_parser("add", help="register a device and issue its credentials")
    _common(add)
    _reload_options(add)
    _bundle_options(add)
    add.add_argument("--device", required=True, help="device id, e.g. r101-thermostat")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--room", required=True, help="room id; created if missing")
    add.add_argument("--room-name", default=None)
    add.add_argument("--floor", type=int, default=None)
    add.set_defaults(handler=_handler("add"))

    imp = commands.add_parser(
        "import", help="add many devices from a CSV file (device_id,room_id,kind[,floor,name])"
    )
    _common(imp)
    _reload_options(imp)
    _bundle_options(imp)
    imp.add_argument("--file", type=Path, required=True)
    imp.set_defaults(handler=_handler("import"))

    _register_maintenance(commands)


def _register_maintenance(commands: Any) -> None:
    listing = commands.add_parser("list", help="registered devices and their credentials")
    _common(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_handler("list"))

    revoke = commands.add_parser(
        "revoke", help="remove a device's credentials; the broker disconnects it"
    )
    _common(revoke)
    _reload_options(revoke)
    revoke.add_argument("--device", required=True)
    revoke.add_argument(
        "--keep-registered", action="store_true", help="keep the registry entry and its state"
    )
    revoke.set_defaults(handler=_handler("revoke"))

    rotate = commands.add_parser("rotate", help="issue a new password; the old one stops working")
    _common(rotate)
    _reload_options(rotate)
    _bundle_options(rotate)
    rotate.add_argument("--device", required=True)
    rotate.set_defaults(handler=_handler("rotate"))

    sync = commands.add_parser(
        "sync", help="rewrite the password file and ACL from the accounts file, and reload"
    )
    _common(sync)
    _reload_options(sync)
    sync.set_defaults(handler=_handler("sync"))

    export = commands.add_parser(
        "export", help="write a device's bundle again, without its password"
    )
    _common(export)
    _bundle_options(export)
    export.add_argument("--device", required=True)
    export.add_argument(
        "--format", choices=["header", "json", "both"], default="both", help="which files"
    )
    export.set_defaults(handler=_handler("export"))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the gateway's TOML file")
    parser.add_argument(
        "--broker-dir",
        type=Path,
        default=None,
        help="where Mosquitto's files are written (default DATA_DIR/broker)",
    )
    parser.add_argument(
        "--password-file", type=Path, default=None, help="default BROKER_DIR/passwd"
    )
    parser.add_argument("--acl-file", type=Path, default=None, help="default BROKER_DIR/acl")
    parser.add_argument(
        "--tls-dir", type=Path, default=None, help="CA and certificates (default BROKER_DIR/tls)"
    )
    parser.add_argument(
        "--accounts-file",
        type=Path,
        default=None,
        help="the gateway's record of broker accounts, hashes only"
        " (default DATA_DIR/broker/accounts.json)",
    )


def _reload_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--broker-pid-file", type=Path, help="send SIGHUP to the pid in Mosquitto's pid_file"
    )
    group.add_argument(
        "--reload-command", help="run this to reload, e.g. 'systemctl reload mosquitto'"
    )
    group.add_argument(
        "--no-reload", action="store_true", help="only write the files (broker not running yet)"
    )


def _bundle_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("bellhop-bundles"), help="where bundles are written"
    )
    parser.add_argument(
        "--broker-host",
        default=None,
        help="the broker as devices reach it (default: the first name in its certificate)",
    )
    parser.add_argument("--broker-port", type=int, default=8883)
    parser.add_argument(
        "--plain",
        action="store_true",
        help="bundles without TLS, for the simulator on a lab broker (no firmware header)",
    )
    parser.add_argument("--timezone", default="UTC0", help="POSIX TZ of the hotel, for firmware")
    parser.add_argument("--wifi-ssid", default="", help="empty: the device reads it from NVS")
    parser.add_argument(
        "--wifi-password-file", type=Path, default=None, help="a file holding the Wi-Fi password"
    )
    parser.add_argument("--ntp-server", default="", help="empty: the MQTT host")
