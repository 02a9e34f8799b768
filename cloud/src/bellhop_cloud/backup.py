"""`bellhop cloud backup | restore`: the relay's database and signing key in one archive.

    manifest = create_backup(config, Path("relay.tar.gz"))   # the relay may be running
    manifest = verify_backup(Path("relay.tar.gz"))           # every checksum
    manifest = restore_backup(config, Path("relay.tar.gz"))  # every relay node stopped

An archive (gzip'd tar, mode 0600: it holds the signing key and every
account's password hash) carries `manifest.json` first, then the database:
`database/relay.db`, a copy by SQLite's online backup API (one consistent
state while the relay writes on), or `database/relay.pgdump`, `pg_dump`'s
custom format (one transaction's snapshot); and `keys/signing-key.pem` when
the key file exists. The manifest holds the format, the software, the
backend, the schema revision, when, and each file's size, mode and SHA-256,
all checked before a restore changes anything.

A restore brings the schema up to date and marks every gateway: each is
asked for a snapshot at its next connection (bridge/resync.py), so the relay
ends up with what the edges know, whatever happened after the backup
(docs/operations-backup.md). The commands are in cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from bellhop_bridge.backup_archive import (
    SHA256,
    ArchiveEntry,
    ArchiveKind,
    manifest_json,
    sha256_file,
    sqlite_in_use,
    utc_stamp,
)
from sqlalchemy.engine import make_url

from bellhop_cloud import __version__
from bellhop_cloud.bridge.resync import request_all
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.migrate import alembic_config
from bellhop_cloud.db.store import Store

__all__ = ["BackupError", "Manifest", "create_backup", "restore_backup", "verify_backup"]

FORMAT: Final = "bellhop-cloud-backup"
FORMAT_VERSION: Final = 1
SQLITE_FILE: Final = "database/relay.db"
PG_FILE: Final = "database/relay.pgdump"
KEY_FILE: Final = "keys/signing-key.pem"
_NAMES: Final = frozenset({SQLITE_FILE, PG_FILE, KEY_FILE})
_TOOL_TIMEOUT_S: Final = 3600.0


class BackupError(Exception):
    """An archive that cannot be made, read or restored; the message says why."""


_KIND: Final = ArchiveKind(
    FORMAT, FORMAT_VERSION, of="relay", max_manifest=1 << 20, error=BackupError
)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    size: int
    mode: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    backend: str  # "sqlite" or "postgresql"
    schema_revision: str | None  # the database's Alembic revision
    created_at: str  # ISO 8601, UTC
    software_version: str
    files: tuple[Entry, ...]
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return manifest_json(self)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = _KIND.manifest_doc(data)
            manifest = cls(**{**doc, "files": tuple(Entry(**e) for e in doc["files"])})
            for entry in manifest.files:
                if entry.name not in _NAMES or not SHA256.fullmatch(entry.sha256):
                    raise BackupError(f"unexpected or malformed entry {entry.name!r}")
            if manifest.backend not in {"sqlite", "postgresql"}:
                raise BackupError(f"unknown backend {manifest.backend!r}")
        except BackupError as exc:
            raise BackupError(f"the manifest: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"the manifest is malformed: {exc}") from None
        _KIND.check_unique(manifest.files)
        return manifest


# -- the database, either backend ------------------------------------------------------------
def _sqlite_path(config: RelayConfig) -> Path:
    return Path(make_url(config.database_url).database or "")


def _pg_env(config: RelayConfig) -> dict[str, str]:
    """libpq's variables for the relay's database: the password never on a command line."""
    url = make_url(config.database_url)
    values = {
        "PGHOST": url.host,
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
        "PGSSLMODE": url.query.get("sslmode") or url.query.get("ssl"),
    }
    return {**os.environ, **{k: str(v) for k, v in values.items() if v}}


def _tool(name: str, args: list[str], config: RelayConfig) -> None:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} not found: install PostgreSQL's client tools")
    try:
        done = subprocess.run(  # noqa: S603 - a fixed tool, arguments built here
            [path, *args],
            env=_pg_env(config),
            capture_output=True,
            timeout=_TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(f"{name} did not finish within {_TOOL_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip()[-2000:]
        raise BackupError(f"{name} failed ({done.returncode}): {detail}")


async def _pg(config: RelayConfig, statements: list[str] | None = None) -> dict[str, Any]:
    """What a restore must know of the PostgreSQL database: other sessions, tables, revision.
    With `statements`, run them first, in one transaction."""
    store = Store.open(config.model_copy(update={"db_pool_size": 1}))
    schema = config.database_schema or "public"
    try:
        if statements:
            async with store.write() as conn:
                for statement in statements:
                    await conn.execute(sa.text(statement))
        async with store.read() as conn:
            others = await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
            tables = await conn.scalar(
                sa.text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            )
            revision = None
            if tables:
                with contextlib.suppress(sa.exc.DBAPIError):
                    revision = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    except (OSError, sa.exc.SQLAlchemyError) as exc:
        raise BackupError(f"cannot reach the database: {type(exc).__name__}: {exc}") from None
    finally:
        await store.close()
    return {"others": int(others or 0), "tables": int(tables or 0), "revision": revision}


def _sqlite_revision(path: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None
    return str(row[0]) if row else None


# -- taking a backup ---------------------------------------------------------------------------
def create_backup(config: RelayConfig, output: Path, *, force: bool = False) -> Manifest:
    """Write the relay's archive to `output` (0600); the relay may be running."""
    if output.exists() and not force:
        raise BackupError(f"{output} exists; give --force to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".bellhop-backup-") as tmp:
        staged: list[tuple[str, Path]] = []
        if config.is_sqlite:
            source = _sqlite_path(config)
            if not source.is_file():
                raise BackupError(f"{source}: no such database (is this the relay's config?)")
            _KIND.copy_sqlite(source, Path(tmp) / "db")
            staged.append((SQLITE_FILE, Path(tmp) / "db"))
            revision = _sqlite_revision(Path(tmp) / "db")
        else:
            args = ["--format=custom", f"--file={Path(tmp) / 'dump'}"]
            if config.database_schema:
                args.append(f"--schema={config.database_schema}")
            _tool("pg_dump", args, config)
            staged.append((PG_FILE, Path(tmp) / "dump"))
            revision = asyncio.run(_pg(config))["revision"]
        key = config.signing_key_path
        if key.is_file():
            shutil.copyfile(key, Path(tmp) / "key")
            staged.append((KEY_FILE, Path(tmp) / "key"))
        entries = [(Entry(n, p.stat().st_size, 0o600, sha256_file(p)), p) for n, p in staged]
        manifest = Manifest(
            backend="sqlite" if config.is_sqlite else "postgresql",
            schema_revision=revision,
            created_at=utc_stamp(),
            software_version=__version__,
            files=tuple(e for e, _ in entries),
        )
        _KIND.write(output, manifest.to_json(), entries, force=force)
    return manifest


# -- reading one back ---------------------------------------------------------------------------
def verify_backup(archive: Path, into: Path | None = None) -> Manifest:
    """Check every member against the manifest; with `into`, also write each file there
    (under its archive name, 0600). Raises BackupError naming the problem."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")

    @contextlib.contextmanager
    def place(entry: ArchiveEntry) -> Iterator[IO[bytes]]:
        assert into is not None
        path = into.joinpath(*PurePosixPath(entry.name).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            yield handle

    return _KIND.read(archive, Manifest.from_json, place if into is not None else None)


# -- restoring it ------------------------------------------------------------------------------
def restore_backup(
    config: RelayConfig, archive: Path, *, force: bool = False
) -> tuple[Manifest, int]:
    """Restore `archive` into the configured database; returns it and the gateways marked
    for a snapshot. Refuses a database in use whatever `force` says, and one that holds
    data, or a signing key that differs, without `force`."""
    manifest = verify_backup(archive)
    backend = "sqlite" if config.is_sqlite else "postgresql"
    if manifest.backend != backend:
        raise BackupError(f"the backup is of a {manifest.backend} relay, this one is on {backend}")
    _check_revision(manifest.schema_revision)
    names = {e.name for e in manifest.files}
    key = config.signing_key_path
    if KEY_FILE in names and key.is_file() and not force:
        wanted = next(e.sha256 for e in manifest.files if e.name == KEY_FILE)
        if sha256_file(key) != wanted:
            raise BackupError(f"{key} exists and differs from the backup's key; give --force")
    if config.is_sqlite:
        target = _sqlite_path(config)
        if target.exists() and sqlite_in_use(target):
            raise BackupError(f"{target} is open in another process (a relay running?); stop it")
        if target.exists() and target.stat().st_size and not force:
            raise BackupError(f"{target} holds a database; give --force to replace it")
    else:
        _check_pg_target(config, force=force)
    # Beside the database file, so that it is renamed into place; a dump anywhere (0700).
    staging_root = _sqlite_path(config).parent if config.is_sqlite else None
    if staging_root is not None:
        staging_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging_root, prefix=".bellhop-restore-") as tmp:
        staged = Path(tmp)
        verify_backup(archive, into=staged)  # what was checked is what is restored
        if config.is_sqlite:
            _place_sqlite(staged / SQLITE_FILE, _sqlite_path(config))
        else:
            _restore_pg(config, staged / PG_FILE, force=force)
        if KEY_FILE in names:
            _write_private(key, (staged / KEY_FILE).read_bytes())
    return manifest, asyncio.run(_after_restore(config))


def _write_private(path: Path, data: bytes) -> None:
    """Replace `path` whole with `data`, mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(draft, path)
    finally:
        draft.unlink(missing_ok=True)


def _check_revision(revision: str | None) -> None:
    if revision is None:
        return
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError:
        raise BackupError(
            f"the backup's schema (revision {revision}) is newer than this relay's;"
            " restore it with the relay version that made it"
        ) from None


def _place_sqlite(copy: Path, target: Path) -> None:
    # A -wal left beside the old database would be replayed into the restored one.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(copy, target)


def _check_pg_target(config: RelayConfig, *, force: bool) -> None:
    found = asyncio.run(_pg(config))
    if found["others"]:
        raise BackupError(
            f"{found['others']} other sessions are connected to the database (a relay"
            " running?); stop every relay node first"
        )
    if found["tables"] and not force:
        schema = config.database_schema or "public"
        raise BackupError(f"schema {schema} holds tables; give --force to replace them")


def _restore_pg(config: RelayConfig, dump: Path, *, force: bool) -> None:
    schema = config.database_schema
    if schema is None:
        # A whole-database dump brings public's contents, not the schema itself.
        statements = ["DROP SCHEMA public CASCADE", "CREATE SCHEMA public"] if force else []
    else:
        statements = [f'DROP SCHEMA IF EXISTS "{schema}" CASCADE']  # the dump creates it
    if statements:
        asyncio.run(_pg(config, statements))
    args = ["--no-owner", "--no-acl", "--exit-on-error", "--single-transaction"]
    _tool("pg_restore", [*args, f"--dbname={_dbname(config)}", str(dump)], config)


def _dbname(config: RelayConfig) -> str:
    return str(make_url(config.database_url).database)


async def _after_restore(config: RelayConfig) -> int:
    """Bring the schema to this relay's, then mark every gateway for a snapshot."""
    store = Store.open(config)
    try:
        await store.migrate()
        async with store.write() as conn:
            return await request_all(conn, reason="restore", at=datetime.now(UTC))
    finally:
        await store.close()
