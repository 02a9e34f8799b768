"""`bellhop edge backup | restore`: the gateway's state in one archive, and back.

What an archive holds and what a restore guarantees: docs/operations-backup.md.
Nothing secret is printed: names, counts, sizes and checksums of the manifest only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup", help="archive the gateway's state while it runs (0600: it holds its keys)"
    )
    backup.add_argument("--config", type=Path, required=True)
    backup.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the archive (default: bellhop-edge-HOTEL-TIME.tar.gz here)",
    )
    backup.add_argument("--force", action="store_true", help="replace an existing archive")
    backup.set_defaults(handler=_backup)

    restore = commands.add_parser(
        "restore", help="restore an archive into the data directory of a stopped gateway"
    )
    restore.add_argument("--config", type=Path, required=True, help="the restoring gateway's")
    restore.add_argument("archive", type=Path)
    restore.add_argument(
        "--force", action="store_true", help="replace a data directory that is not empty"
    )
    restore.add_argument(
        "--verify-only", action="store_true", help="check the archive; change nothing"
    )
    restore.set_defaults(handler=_restore)


def _backup(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from bellhop_edge.backup import BackupError, create_backup
    from bellhop_edge.cli.config_file import load_config_or_exit

    config = load_config_or_exit(args.config)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or Path(f"bellhop-edge-{config.hotel_id}-{stamp}.tar.gz")
    try:
        manifest = create_backup(config, output, force=args.force)
    except (BackupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    databases = sum(e.kind == "sqlite" for e in manifest.files)
    print(
        f"backup of hotel {manifest.hotel_id}"
        f" (gateway {manifest.gateway_id or 'not enrolled'}) written to {output} (mode 0600):"
        f" {len(manifest.files)} files, {databases} of them databases,"
        f" {output.stat().st_size} bytes"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from bellhop_edge.backup import BackupError, config_field, restore_backup, verify_backup
    from bellhop_edge.cli.config_file import load_config_or_exit

    config = load_config_or_exit(args.config)
    try:
        if args.verify_only:
            manifest = verify_backup(args.archive)
            print(
                f"{args.archive}: backup of hotel {manifest.hotel_id} taken"
                f" {manifest.created_at}, {len(manifest.files)} files, every checksum matches"
            )
            return 0
        manifest = restore_backup(config, args.archive, force=args.force)
    except (BackupError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored hotel {manifest.hotel_id} (gateway {manifest.gateway_id or 'not enrolled'},"
        f" backup of {manifest.created_at}) into {config.data_dir}"
    )
    for entry in manifest.files:
        name = entry.name.removeprefix("config/")
        if name != entry.name and config_field(config, name) is None:
            print(f"not restored: {name} (the configuration names no path for it)")
    print(f"start it with: bellhop edge run --config {args.config}")
    return 0
