"""`bellhop devices …`: provision the hotel's devices and its broker's TLS.

A thin layer over `bellhop_edge.provisioning` and `bellhop_edge.pki`; heavy
imports stay inside the handlers. File locations default to places under the
gateway's `data_dir` (docs/provisioning.md); exit status 0 on success, 1 when
the operation failed or the broker could not be reloaded, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bellhop_edge.config import EdgeConfig
    from bellhop_edge.provisioning import Bundle, Provisioner, Reload, SiteSettings
    from bellhop_edge.store import EdgeStore

KINDS = (
    "thermostat",
    "light",
    "door_lock",
    "door_sensor",
    "environment_sensor",
    "gas_sensor",
)


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
    ca.set_defaults(handler=_ca)

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
    gateway.set_defaults(handler=_gateway)

    add = commands.add_parser("add", help="register a device and issue its credentials")
    _common(add)
    _reload_options(add)
    _bundle_options(add)
    add.add_argument("--device", required=True, help="device id, e.g. r101-thermostat")
    add.add_argument("--kind", required=True, choices=KINDS)
    add.add_argument("--room", required=True, help="room id; created if missing")
    add.add_argument("--room-name", default=None)
    add.add_argument("--floor", type=int, default=None)
    add.set_defaults(handler=_add)

    imp = commands.add_parser(
        "import", help="add many devices from a CSV file (device_id,room_id,kind[,floor,name])"
    )
    _common(imp)
    _reload_options(imp)
    _bundle_options(imp)
    imp.add_argument("--file", type=Path, required=True)
    imp.set_defaults(handler=_import)

    _register_maintenance(commands)


def _register_maintenance(commands: Any) -> None:
    listing = commands.add_parser("list", help="registered devices and their credentials")
    _common(listing)
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_list)

    revoke = commands.add_parser(
        "revoke", help="remove a device's credentials; the broker disconnects it"
    )
    _common(revoke)
    _reload_options(revoke)
    revoke.add_argument("--device", required=True)
    revoke.add_argument(
        "--keep-registered", action="store_true", help="keep the registry entry and its state"
    )
    revoke.set_defaults(handler=_revoke)

    rotate = commands.add_parser("rotate", help="issue a new password; the old one stops working")
    _common(rotate)
    _reload_options(rotate)
    _bundle_options(rotate)
    rotate.add_argument("--device", required=True)
    rotate.set_defaults(handler=_rotate)

    sync = commands.add_parser(
        "sync", help="rewrite the password file and ACL from the accounts file, and reload"
    )
    _common(sync)
    _reload_options(sync)
    sync.set_defaults(handler=_sync)

    export = commands.add_parser(
        "export", help="write a device's bundle again, without its password"
    )
    _common(export)
    _bundle_options(export)
    export.add_argument("--device", required=True)
    export.add_argument(
        "--format", choices=["header", "json", "both"], default="both", help="which files"
    )
    export.set_defaults(handler=_export)


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


# -- wiring -----------------------------------------------------------------------------
def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _load(path: Path) -> EdgeConfig:
    from bellhop_edge.config import load_config
    from bellhop_edge.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _broker_dir(args: argparse.Namespace, config: EdgeConfig) -> Path:
    return Path(args.broker_dir or config.data_dir / "broker")


def _tls_dir(args: argparse.Namespace, config: EdgeConfig) -> Path:
    return Path(args.tls_dir or _broker_dir(args, config) / "tls")


def _reload(args: argparse.Namespace) -> Reload | None:
    from bellhop_edge.provisioning import CommandReload, SignalReload

    if getattr(args, "broker_pid_file", None):
        return SignalReload(args.broker_pid_file)
    if getattr(args, "reload_command", None):
        return CommandReload.parse(args.reload_command)
    return None


def _provisioner(args: argparse.Namespace, config: EdgeConfig, store: EdgeStore) -> Provisioner:
    from bellhop_edge.provisioning import BrokerEndpoint, BrokerFiles, Provisioner
    from bellhop_edge.provisioning.pki import LOOPBACK_HOSTS, HotelPki

    broker_dir = _broker_dir(args, config)
    files = BrokerFiles(
        args.password_file or broker_dir / "passwd", args.acl_file or broker_dir / "acl"
    )
    pki = HotelPki(_tls_dir(args, config))
    ca_pem = pki.ca_cert.read_text() if pki.ca_cert.exists() else None
    host = getattr(args, "broker_host", None)
    if host is None:
        names = [h for h in pki.server_hosts() if h not in LOOPBACK_HOSTS]
        host = names[0] if names else "localhost"
    return Provisioner(
        hotel_id=config.hotel_id,
        store=store,
        accounts_path=args.accounts_file or config.data_dir / "broker" / "accounts.json",
        broker_files=files,
        reload=_reload(args),
        endpoint=BrokerEndpoint(
            host, getattr(args, "broker_port", 8883), tls=not getattr(args, "plain", False)
        ),
        ca_pem=ca_pem,
    )


def _site(args: argparse.Namespace) -> SiteSettings:
    """The bundle options; their defaults for a command that writes no bundle."""
    from bellhop_edge.provisioning import SiteSettings

    wifi_password = ""
    if getattr(args, "wifi_password_file", None) is not None:
        wifi_password = args.wifi_password_file.read_text().strip("\r\n")
    return SiteSettings(
        timezone=getattr(args, "timezone", "UTC0"),
        wifi_ssid=getattr(args, "wifi_ssid", ""),
        wifi_password=wifi_password,
        ntp_server=getattr(args, "ntp_server", ""),
    )


Operation = Callable[["Provisioner", "SiteSettings"], int]


def _run(args: argparse.Namespace, operation: Operation) -> int:
    """Run `operation(provisioner, site)`, turning the domain's errors into messages."""
    from bellhop_edge.errors import EdgeError, ReloadFailedError
    from bellhop_edge.store import EdgeStore

    config = _load(args.config)
    try:
        # Settings are checked before anything changes.
        site = _site(args)
        store = EdgeStore.open(config.database_path)
    except (EdgeError, OSError) as exc:
        return _fail(str(exc), 2)
    try:
        provisioner = _provisioner(args, config, store)
    except (EdgeError, OSError) as exc:
        store.close()
        return _fail(str(exc), 2)
    try:
        return int(operation(provisioner, site))
    except ReloadFailedError as exc:
        if exc.bundles:
            _write(args, exc.bundles, site)
        return _fail(str(exc))
    except (EdgeError, OSError) as exc:
        return _fail(str(exc))
    finally:
        store.close()


def _write(
    args: argparse.Namespace,
    bundles: Sequence[Bundle],
    site: SiteSettings,
    *,
    name: str | None = None,
    headers: bool = True,
    simulator: bool = True,
) -> None:
    from bellhop_edge.provisioning import write_bundles

    files = write_bundles(
        args.out, bundles, site, simulator_name=name, headers=headers, simulator=simulator
    )
    for header in files.headers:
        print(f"firmware header: {header}  (copy to firmware/esp32/include/provisioning.h)")
    if files.simulator is not None:
        print(f"simulator file:  {files.simulator}")
    if headers and not files.headers:
        why = "--plain" if getattr(args, "plain", False) else "the hotel has no CA yet"
        print(f"no firmware header ({why}): the firmware speaks TLS only", file=sys.stderr)


def _reload_note(args: argparse.Namespace) -> None:
    if getattr(args, "no_reload", False):
        print("broker not reloaded (--no-reload): changes apply at its next start or reload")


# -- handlers -----------------------------------------------------------------------------
def _ca(args: argparse.Namespace) -> int:
    from bellhop_edge.errors import PkiError
    from bellhop_edge.files import write_atomic
    from bellhop_edge.provisioning import broker_files as broker
    from bellhop_edge.provisioning.pki import DEFAULT_SERVER_DAYS, LOOPBACK_HOSTS, HotelPki

    config = _load(args.config)
    broker_dir = _broker_dir(args, config)
    pki = HotelPki(_tls_dir(args, config))
    # Renewing keeps the certificate's names unless new ones are given.
    hosts = [h for h in args.hosts.split(",") if h.strip()] or [
        h for h in pki.server_hosts() if h not in LOOPBACK_HOSTS
    ]
    if not hosts:
        return _fail("give --hosts: the names and addresses devices use for the broker", 2)
    try:
        ca_key = None
        if args.use_ca is not None:
            _, ca_key = pki.adopt_ca(*args.use_ca)
            print(f"using the CA {args.use_ca[0]}; copied to {pki.ca_cert}")
        elif not pki.ca_cert.exists():
            pki.create_ca(config.hotel_id)
            print(f"created the hotel CA: {pki.ca_cert} (key {pki.ca_key}, keep it safe)")
        elif not pki.ca_key.exists():
            return _fail(f"{pki.ca_cert} is the operator's CA: give --use-ca CERT KEY to sign")
        server = pki.issue_server(hosts, ca_key=ca_key, days=args.days or DEFAULT_SERVER_DAYS)
    except (PkiError, OSError) as exc:
        return _fail(str(exc))
    print(f"server certificate for {', '.join(server.hosts)} until {server.not_after:%Y-%m-%d}")
    conf = broker.render_config(
        port=args.plain_port,
        password_file=args.password_file or broker_dir / "passwd",
        acl_file=args.acl_file or broker_dir / "acl",
        tls=broker.TlsListener(
            args.tls_port, server.ca_cert, server.cert, server.key, bind=args.tls_bind
        ),
        persistence_dir=args.persistence_dir,
        run_as=args.mosquitto_user,
    )
    path = broker_dir / "mosquitto.conf"
    write_atomic(path, conf, mode=0o640)
    print(f"broker config: {path} (restart Mosquitto to load a new certificate or listener)")
    return 0


def _gateway(args: argparse.Namespace) -> int:
    def operation(provisioner: Provisioner, _site: SiteSettings) -> int:
        config = _load(args.config)
        secret = args.secret_file or config.mqtt.password_file
        secret = secret or config.data_dir / "broker" / "gateway.secret"
        username = provisioner.gateway_account(secret, rotate=args.rotate)
        print(f"gateway account {username}; password in {secret}")
        if config.mqtt.username != username or config.mqtt.password_file != secret:
            print(
                f'set [mqtt] username = "{username}" and password_file = "{secret}"'
                f" in {args.config}"
            )
        _reload_note(args)
        return 0

    return _run(args, operation)


def _add(args: argparse.Namespace) -> int:
    from bellhop_devices.messages import DeviceKind

    def operation(provisioner: Provisioner, site: SiteSettings) -> int:
        bundle = provisioner.add_device(
            args.room,
            args.device,
            DeviceKind(args.kind),
            room_name=args.room_name,
            floor=args.floor,
        )
        print(f"added {bundle.device_id} ({bundle.kind.value}) in room {bundle.room_id}")
        _write(args, [bundle], site)
        _reload_note(args)
        return 0

    return _run(args, operation)


def _import(args: argparse.Namespace) -> int:
    def operation(provisioner: Provisioner, site: SiteSettings) -> int:
        devices = _read_csv(args.file)
        bundles = provisioner.add_devices(devices)
        print(f"added {len(bundles)} devices")
        _write(args, bundles, site, name="devices.json")
        _reload_note(args)
        return 0

    return _run(args, operation)


def _read_csv(path: Path) -> list[Any]:
    import csv

    from bellhop_devices.messages import DeviceKind

    from bellhop_edge.errors import InvalidDeviceError
    from bellhop_edge.provisioning import NewDevice

    out = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or row[0].startswith("#") or row[0] == "device_id":
                continue
            try:
                device_id, room_id, kind, *rest = (cell.strip() for cell in row)
                floor = int(rest[0]) if rest and rest[0] else None
                name = rest[1] if len(rest) > 1 else None
                out.append(NewDevice(device_id, room_id, DeviceKind(kind), name, floor))
            except ValueError as exc:
                raise InvalidDeviceError(f"{path}:{number}: {exc}") from None
    return out


def _list(args: argparse.Namespace) -> int:
    import json
    import time

    def operation(provisioner: Provisioner, _site: SiteSettings) -> int:
        rows = provisioner.list_devices()
        for row in rows:
            issued = (
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(row.issued_at / 1000))
                if row.issued_at is not None
                else None
            )
            if args.json:
                print(
                    json.dumps(
                        {
                            "device_id": row.device_id,
                            "room_id": row.room_id,
                            "kind": row.kind.value if row.kind else None,
                            "username": row.username,
                            "issued_at": row.issued_at,
                            "connectivity": row.connectivity.value,
                            "registered": row.registered,
                        }
                    )
                )
            else:
                print(
                    f"{row.device_id:<32} room {row.room_id or '-':<8}"
                    f" {row.kind.value if row.kind else '-':<19}"
                    f" {'credentials ' + issued + ' UTC' if issued else 'NO CREDENTIALS':<29}"
                    f" {row.connectivity.value}{'' if row.registered else ' (not registered)'}"
                )
        if not args.json:
            print(f"{len(rows)} device(s)")
        return 0

    return _run(args, operation)


def _revoke(args: argparse.Namespace) -> int:
    def operation(provisioner: Provisioner, _site: SiteSettings) -> int:
        provisioner.revoke(args.device, keep_registered=args.keep_registered)
        kept = " (still registered)" if args.keep_registered else " and removed from the registry"
        print(f"revoked {args.device}{kept}")
        _reload_note(args)
        return 0

    return _run(args, operation)


def _rotate(args: argparse.Namespace) -> int:
    def operation(provisioner: Provisioner, site: SiteSettings) -> int:
        bundle = provisioner.rotate(args.device)
        print(f"new password for {bundle.device_id}; the old one no longer works")
        _write(args, [bundle], site)
        _reload_note(args)
        return 0

    return _run(args, operation)


def _sync(args: argparse.Namespace) -> int:
    def operation(provisioner: Provisioner, _site: SiteSettings) -> int:
        provisioner.sync()
        files = provisioner.broker_files
        print(f"wrote {files.password_file} and {files.acl_file}")
        _reload_note(args)
        return 0

    return _run(args, operation)


def _export(args: argparse.Namespace) -> int:
    def operation(provisioner: Provisioner, site: SiteSettings) -> int:
        bundle = provisioner.export(args.device)
        _write(
            args,
            [bundle],
            site,
            headers=args.format in {"header", "both"},
            simulator=args.format in {"json", "both"},
        )
        print(
            "no password in an export (the gateway keeps only its hash):"
            " `bellhop devices rotate` issues a new one",
            file=sys.stderr,
        )
        return 0

    return _run(args, operation)
