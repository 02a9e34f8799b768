"""Backups of one gateway, taken while it runs, and their restore on any machine.

    manifest = create_backup(config, Path("gw.tar.gz"))      # the gateway may be running
    manifest = verify_backup(Path("gw.tar.gz"))              # every checksum
    manifest = restore_backup(config, Path("gw.tar.gz"))     # into config.data_dir

An archive (gzip'd tar, mode 0600: it holds the gateway's keys) carries
`manifest.json` first, then every file of the data directory under `data/`:
each SQLite database copied with SQLite's online backup API (one consistent
state, the gateway writing on meanwhile), every other file as it is (the
gateway replaces its files whole, so a read sees one version). That is the
store, the bridge's key, identity and sent mark, the staff tokens, the broker's
accounts, password file, ACL and TLS, whatever else is kept there. Files the
configuration names elsewhere (a tokens file, a CA) travel under `config/<field>`,
restored to the path the restoring configuration gives that field. The manifest
(format, software, hotel, gateway, when, the store's schema version, each file's
size, mode and SHA-256) is checked whole before a restore touches anything.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

from bellhop_bridge.backup_archive import (
    SHA256,
    ArchiveEntry,
    ArchiveKind,
    manifest_json,
    sha256_file,
    sqlite_in_use,
    utc_stamp,
)

from bellhop_edge.config import EdgeConfig
from bellhop_edge.errors import EdgeError
from bellhop_edge.files import write_atomic

__all__ = [
    "BackupError",
    "Entry",
    "Manifest",
    "config_field",
    "create_backup",
    "database_in_use",
    "restore_backup",
    "verify_backup",
]

FORMAT: Final = "bellhop-edge-backup"
FORMAT_VERSION: Final = 1
SQLITE_MAGIC: Final = b"SQLite format 3\x00"
# SQLite's companions of a database, copied inside it by the backup API.
_COMPANIONS: Final = ("-wal", "-shm", "-journal")
# write_atomic's drafts (".NAME.xxxxxxxx") and lock files: never a gateway's state.
_SCRATCH: Final = re.compile(r"^\..+\.(lock|[a-z0-9_]{8})$")
_MAX_CONFIG_FILE: Final = 16 << 20  # files outside the data directory are held in memory
_READ_TRIES: Final = 5


class BackupError(EdgeError):
    """An archive that cannot be made, read or restored; the message says why."""


_KIND: Final = ArchiveKind(
    FORMAT, FORMAT_VERSION, of="gateway", max_manifest=4 << 20, error=BackupError
)


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # data/<path in the data directory> or config/<field>
    kind: str  # "sqlite" (copied with the backup API) or "file"
    size: int
    mode: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    hotel_id: str
    gateway_id: str | None  # None: never enrolled with a relay
    created_at: str  # ISO 8601, UTC
    schema_version: int  # the store's, 0 when it has none yet
    software_version: str
    files: tuple[Entry, ...] = field(default=())
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return manifest_json(self)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        try:
            doc = _KIND.manifest_doc(data)
            files = tuple(Entry(**e) for e in doc.pop("files"))
            manifest = cls(**doc, files=files)
            if not isinstance(manifest.schema_version, int) or not manifest.hotel_id:
                raise TypeError("no hotel or no schema version")
            for entry in files:
                _check_name(entry.name)
                if entry.kind not in {"sqlite", "file"} or not SHA256.fullmatch(entry.sha256):
                    raise BackupError(f"the manifest's entry for {entry.name} is malformed")
        except BackupError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"the manifest is malformed: {exc}") from None
        _KIND.check_unique(files)
        return manifest


def _check_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    parts = path.parts
    if (
        path.is_absolute()
        or len(parts) < 2  # a top folder and a name
        or parts[0] not in {"data", "config"}
        or any(p in {"", ".", ".."} for p in parts)
        or "\\" in name
    ):
        raise BackupError(f"unsafe file name in the archive: {name!r}")
    return path


def _software_version() -> str:
    try:
        return version("bellhop-edge")
    except PackageNotFoundError:
        return "unknown"


# -- taking a backup ---------------------------------------------------------------------------
def is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def database_in_use(path: Path) -> bool:
    """Whether another process (a gateway running?) has the SQLite database open."""
    return sqlite_in_use(path)


def _data_files(data_dir: Path) -> Iterator[Path]:
    """Every file of the gateway's state under `data_dir`, databases last, by name."""
    found = sorted(p for p in data_dir.rglob("*") if p.is_file() and not p.is_symlink())
    databases = [p for p in found if is_sqlite(p)]
    companions = {Path(f"{db}{suffix}") for db in databases for suffix in _COMPANIONS}
    skipped = companions.union(databases)
    yield from (p for p in found if p not in skipped and not _SCRATCH.match(p.name))
    # The sent mark before the store: never above the store's newest sequence, so the
    # restored gateway lets the relay's Welcome say what it lost (docs/bridge.md).
    yield from databases


def _copy_database(source: Path, target: Path) -> None:
    _KIND.copy_sqlite(source, target)
    os.chmod(target, 0o600)


def _copy_file(source: Path, target: Path) -> None:
    """Copy `source`, again if it changed while being read (a file replaced mid-read)."""
    for _ in range(_READ_TRIES):
        before = source.stat()
        shutil.copyfile(source, target)
        after = source.stat()
        same = (before.st_ino, before.st_size, before.st_mtime_ns)
        if same == (after.st_ino, after.st_size, after.st_mtime_ns):
            os.chmod(target, 0o600)
            return
    raise BackupError(f"{source}: changed on every read; try again")


def _config_files(config: EdgeConfig) -> dict[str, Path]:
    """Files the configuration names, by dotted field (e.g. `api.jwks_file`), that exist."""
    named: dict[str, Path] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        elif isinstance(value, Path) and prefix != "data_dir.":
            named[prefix.rstrip(".")] = value

    walk("", config.model_dump())
    return {k: v for k, v in named.items() if v.is_file()}


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _schema_version(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def create_backup(config: EdgeConfig, output: Path, *, force: bool = False) -> Manifest:
    """Write an archive of the gateway's state to `output` (mode 0600) and return its manifest.

    The gateway may be running. Refuses an existing `output` unless `force`.
    """
    from bellhop_edge.bridge.identity import Identity

    data_dir = config.data_dir
    if not data_dir.is_dir():
        raise BackupError(f"{data_dir}: no such data directory (is this the gateway's config?)")
    if _inside(output, data_dir):
        raise BackupError("write the archive outside the data directory it backs up")
    if output.exists() and not force:
        raise BackupError(f"{output} exists; give --force to replace it")
    identity = Identity.load(data_dir)
    output.parent.mkdir(parents=True, exist_ok=True)
    # The copies are staged beside the archive (same disk, never a shared /tmp), 0700.
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".bellhop-backup-") as tmp:
        staged = Path(tmp)
        entries: list[tuple[Entry, Path]] = []
        sources = [(f"data/{p.relative_to(data_dir).as_posix()}", p) for p in _data_files(data_dir)]
        sources += [
            (f"config/{name}", path)
            for name, path in sorted(_config_files(config).items())
            if not _inside(path, data_dir)
        ]
        for n, (name, source) in enumerate(sources):
            entries.append(_stage(staged / f"{n:06d}", name, source))
        staged_db = next((p for e, p in entries if e.name == "data/edge.db"), None)
        manifest = Manifest(
            hotel_id=config.hotel_id,
            gateway_id=identity.gateway_id if identity is not None else None,
            created_at=utc_stamp(),
            schema_version=_schema_version(staged_db) if staged_db else 0,
            software_version=_software_version(),
            files=tuple(e for e, _ in entries),
        )
        _KIND.write(output, manifest.to_json(), entries, force=force)
    return manifest


def _stage(target: Path, name: str, source: Path) -> tuple[Entry, Path]:
    sqlite = is_sqlite(source)
    (_copy_database if sqlite else _copy_file)(source, target)
    mode = source.stat().st_mode & 0o777
    entry = Entry(
        name, "sqlite" if sqlite else "file", target.stat().st_size, mode, sha256_file(target)
    )
    return entry, target


# -- reading one back ---------------------------------------------------------------------------
def verify_backup(archive: Path) -> Manifest:
    """Read the whole archive and check every file against its manifest."""
    if not archive.is_file():
        raise BackupError(f"{archive}: no such file")
    return _KIND.read(archive, Manifest.from_json)


# -- restoring it ------------------------------------------------------------------------------
def restore_backup(config: EdgeConfig, archive: Path, *, force: bool = False) -> Manifest:
    """Restore `archive` into `config.data_dir`, whole, after checking all of it.

    Refuses while a gateway has the target's database open, whatever `force`
    says; a data directory that is not empty is replaced only with `force`.
    """
    from bellhop_edge.store.schema import SCHEMA_VERSION

    manifest = verify_backup(archive)
    if manifest.hotel_id != config.hotel_id:
        raise BackupError(
            f"the backup is of hotel {manifest.hotel_id!r}, the configuration's is"
            f" {config.hotel_id!r}"
        )
    if manifest.schema_version > SCHEMA_VERSION:
        raise BackupError(
            f"the backup's store is at schema version {manifest.schema_version}, newer than"
            f" this gateway's {SCHEMA_VERSION}; restore it with a newer gateway"
        )
    data_dir = config.data_dir
    _refuse_running(data_dir)
    if data_dir.exists() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty; give --force to replace what it holds")
    targets = _config_targets(config, manifest, force=force)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}.restoring-"))
    held: dict[str, bytearray] = {}
    try:

        @contextlib.contextmanager
        def place(entry: ArchiveEntry) -> Iterator[IO[bytes]]:
            top, _, rest = entry.name.partition("/")
            if top == "config":
                if entry.size > _MAX_CONFIG_FILE:
                    raise BackupError(f"{entry.name}: too large for a configuration file")
                buffer = io.BytesIO()
                yield buffer
                held[entry.name] = bytearray(buffer.getvalue())
                return
            path = staging.joinpath(*PurePosixPath(rest).parts)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(path, entry.mode & 0o777)

        # Read again, into place: what was checked is what is written.
        _KIND.read(archive, Manifest.from_json, place)
        _refuse_running(data_dir)
        _swap(staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for name, path in targets.items():
        entry = next(e for e in manifest.files if e.name == name)
        write_atomic(path, bytes(held[name]), mode=entry.mode & 0o777)
    return manifest


def config_field(config: EdgeConfig, dotted: str) -> Path | None:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value if isinstance(value, Path) else None


def _config_targets(config: EdgeConfig, manifest: Manifest, *, force: bool) -> dict[str, Path]:
    """Where each `config/<field>` file goes: the path the restoring config gives the field."""
    targets: dict[str, Path] = {}
    for entry in manifest.files:
        if not entry.name.startswith("config/"):
            continue
        path = config_field(config, entry.name.removeprefix("config/"))
        if path is None or _inside(path, config.data_dir):
            continue  # nowhere to put it, or the data directory's own copy stands
        if path.exists() and not force and sha256_file(path) != entry.sha256:
            raise BackupError(f"{path} exists and differs from the backup's; give --force")
        targets[entry.name] = path
    return targets


def _refuse_running(data_dir: Path) -> None:
    if not data_dir.is_dir():
        return
    for path in sorted(data_dir.rglob("*")):
        if path.is_file() and is_sqlite(path) and database_in_use(path):
            raise BackupError(
                f"{path} is open in another process (a gateway running on {data_dir}?);"
                " stop it before restoring"
            )


def _swap(staging: Path, data_dir: Path) -> None:
    """Put the restored directory in place; the old one's contents go only after."""
    old: Path | None = None
    if data_dir.exists():
        old = data_dir.with_name(f".{data_dir.name}.replaced-{secrets.token_hex(4)}")
        os.rename(data_dir, old)
    try:
        os.rename(staging, data_dir)
    except OSError:
        if old is not None:
            os.rename(old, data_dir)
        raise
    os.chmod(data_dir, 0o700)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
