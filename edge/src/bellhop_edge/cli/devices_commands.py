"""What each `bellhop devices` subcommand does, and the wiring they share.

`cli.devices` declares the arguments and imports this module only when a
subcommand runs, so its imports cost nothing to `bellhop --help`. `_run`
builds the `Provisioner` from the gateway's config and the options, and turns
the domain's errors into a message and an exit status: 0 done, 1 the
operation failed or the broker could not be reloaded, 2 bad usage.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from bellhop_devices.messages import DeviceKind

from bellhop_edge.config import EdgeConfig, load_config
from bellhop_edge.errors import (
    ConfigError,
    EdgeError,
    InvalidDeviceError,
    PkiError,
    ReloadFailedError,
)
from bellhop_edge.files import write_atomic
from bellhop_edge.provisioning import broker_files as broker
from bellhop_edge.provisioning.bundles import write_bundles
from bellhop_edge.provisioning.pki import DEFAULT_SERVER_DAYS, LOOPBACK_HOSTS, HotelPki
from bellhop_edge.provisioning.provisioner import Provisioner
from bellhop_edge.provisioning.records import (
    BrokerEndpoint,
    BrokerFiles,
    Bundle,
    NewDevice,
    SiteSettings,
)
from bellhop_edge.provisioning.reload import CommandReload, Reload, SignalReload
from bellhop_edge.store import EdgeStore

__all__ = ["HANDLERS"]

# Not imported from `cli.devices`: that module imports this one.
Handler = Callable[[argparse.Namespace], int]
Operation = Callable[[Provisioner, SiteSettings], int]


# -- wiring -----------------------------------------------------------------------------
def _fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _load(path: Path) -> EdgeConfig:
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
    if getattr(args, "broker_pid_file", None):
        return SignalReload(args.broker_pid_file)
    if getattr(args, "reload_command", None):
        return CommandReload.parse(args.reload_command)
    return None


def _provisioner(args: argparse.Namespace, config: EdgeConfig, store: EdgeStore) -> Provisioner:
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
    wifi_password = ""
    if getattr(args, "wifi_password_file", None) is not None:
        wifi_password = args.wifi_password_file.read_text().strip("\r\n")
    return SiteSettings(
        timezone=getattr(args, "timezone", "UTC0"),
        wifi_ssid=getattr(args, "wifi_ssid", ""),
        wifi_password=wifi_password,
        ntp_server=getattr(args, "ntp_server", ""),
    )


def _run(args: argparse.Namespace, operation: Operation) -> int:
    """Run `operation(provisioner, site)`, turning the domain's errors into messages."""
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


def _read_csv(path: Path) -> list[NewDevice]:
    """Rows `device_id,room_id,kind[,floor[,room_name]]`; a header row and `#` lines skipped."""
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


HANDLERS: Final[Mapping[str, Handler]] = {
    "ca": _ca,
    "gateway": _gateway,
    "add": _add,
    "import": _import,
    "list": _list,
    "revoke": _revoke,
    "rotate": _rotate,
    "sync": _sync,
    "export": _export,
}
"""The handler of each `bellhop devices` subcommand, by its name."""
