"""`bellhop cloud ...`: run the relay, migrate its database, back it up and restore it.

Only argparse is imported here; the relay loads when a subcommand runs.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bellhop_cloud.config import RelayConfig


def register(subparsers: Any) -> None:
    cloud = subparsers.add_parser("cloud", help="the cloud relay")
    commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="serve the REST API (migrates first by default)")
    _config_args(run)
    run.add_argument("--host", help="listen address (default from config: 127.0.0.1)")
    run.add_argument("--port", type=int, help="listen port (default from config: 8080)")
    run.set_defaults(handler=_configured(_run))

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _config_args(migrate)
    migrate.set_defaults(handler=_configured(_migrate))

    backup = commands.add_parser(
        "backup", help="archive the database and signing key while the relay runs (0600)"
    )
    _config_args(backup)
    backup.add_argument("--output", help="the archive (default: bellhop-cloud-TIME.tar.gz here)")
    backup.add_argument("--force", action="store_true", help="replace an existing archive")
    backup.set_defaults(handler=_configured(_backup))

    restore = commands.add_parser(
        "restore", help="restore an archive (every relay node stopped); gateways then resync"
    )
    _config_args(restore)
    restore.add_argument("archive")
    restore.add_argument("--force", action="store_true", help="replace a database with data")
    restore.add_argument("--verify-only", action="store_true", help="check it; change nothing")
    restore.set_defaults(handler=_configured(_restore))


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML file; BELLHOP_CLOUD_* overrides")
    parser.add_argument("--database-url", help="sqlite:///FILE or postgresql://...")


def _configured(
    handler: Callable[[argparse.Namespace, RelayConfig], int],
) -> Callable[[argparse.Namespace], int]:
    """`handler` given the relay's configuration (the file, then BELLHOP_CLOUD_*, then
    the command's options); one that does not load is printed and exit 2."""

    @functools.wraps(handler)
    def with_config(args: argparse.Namespace) -> int:
        import sys
        from pathlib import Path

        from bellhop_cloud.config import load_config
        from bellhop_cloud.errors import ConfigError

        # Only `run` has --host and --port.
        extra = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
        overrides = {k: v for k, v in extra.items() if v is not None}
        if args.database_url:
            overrides["database_url"] = args.database_url
        try:
            config = load_config(Path(args.config) if args.config else None, **overrides)
        except ConfigError as exc:
            print(f"bellhop cloud: {exc.detail}", file=sys.stderr)
            return 2
        return handler(args, config)

    return with_config


def _run(args: argparse.Namespace, config: RelayConfig) -> int:
    import logging

    from bellhop_cloud.server import run

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    # Its DEBUG lines carry every statement's parameters: e-mails, names, hashes.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    run(config, log_level="debug" if args.verbose else "info")
    return 0


def _migrate(args: argparse.Namespace, config: RelayConfig) -> int:
    from bellhop_cloud.server import run_migrations

    run_migrations(config)
    print("database is at the latest schema")
    return 0


def _backup(args: argparse.Namespace, config: RelayConfig) -> int:
    import sys
    from datetime import UTC, datetime
    from pathlib import Path

    from bellhop_cloud.backup import BackupError, create_backup

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = Path(args.output or f"bellhop-cloud-{stamp}.tar.gz")
    try:
        manifest = create_backup(config, output, force=args.force)
    except (BackupError, OSError) as exc:
        print(f"bellhop cloud: {exc}", file=sys.stderr)
        return 1
    # Names and sizes only: the archive holds the signing key and password hashes.
    print(
        f"backup of the relay ({manifest.backend}, schema {manifest.schema_revision}) written"
        f" to {output} (mode 0600): {', '.join(e.name for e in manifest.files)},"
        f" {output.stat().st_size} bytes"
    )
    return 0


def _restore(args: argparse.Namespace, config: RelayConfig) -> int:
    import sys
    from pathlib import Path

    from bellhop_cloud.backup import BackupError, restore_backup, verify_backup

    archive = Path(args.archive)
    try:
        if args.verify_only:
            manifest = verify_backup(archive)
            print(f"{archive}: relay backup of {manifest.created_at}, every checksum matches")
            return 0
        manifest, marked = restore_backup(config, archive, force=args.force)
    except (BackupError, OSError) as exc:
        print(f"bellhop cloud: {exc}", file=sys.stderr)
        return 1
    print(f"restored the relay's backup of {manifest.created_at} ({manifest.backend})")
    print(f"{marked} gateways will be asked for a snapshot when they next connect")
    return 0
