"""The backup archive the gateway and the relay both write, and its checks.

    kind = ArchiveKind("bellhop-edge-backup", 1, of="gateway", max_manifest=4 << 20,
                       error=BackupError)
    kind.write(output, manifest_json(manifest), entries, force=False)
    manifest = kind.read(archive, Manifest.from_json, place)   # every checksum

An archive is a gzip'd tar, mode 0600 (it holds keys): `manifest.json` first,
then each file the manifest lists with its size and SHA-256, checked as it is
read so that nothing damaged is ever written out. What goes in and where a
restore puts it is each side's (bellhop_edge.backup, bellhop_cloud.backup);
the kind carries the side's format and error class, so that every refusal is
the side's own BackupError.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import sqlite3
import tarfile
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "MANIFEST",
    "SHA256",
    "ArchiveEntry",
    "ArchiveKind",
    "ArchiveManifest",
    "Place",
    "manifest_json",
    "sha256_file",
    "sqlite_in_use",
    "utc_stamp",
]

MANIFEST: Final = "manifest.json"
SHA256: Final = re.compile(r"[0-9a-f]{64}")
_CHUNK: Final = 1 << 20


class ArchiveEntry(Protocol):
    """One file of the archive, as its manifest lists it."""

    @property
    def name(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mode(self) -> int: ...
    @property
    def sha256(self) -> str: ...


class ArchiveManifest(Protocol):
    @property
    def files(self) -> Sequence[ArchiveEntry]: ...


M = TypeVar("M", bound=ArchiveManifest)
# Where a checked file's bytes go while it is read: a writable handle for the entry.
Place = Callable[[ArchiveEntry], AbstractContextManager[IO[bytes]]]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def utc_stamp() -> str:
    """Now, ISO 8601 to the second, in UTC with a Z."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def manifest_json(manifest: DataclassInstance) -> bytes:
    doc = asdict(manifest)
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def sqlite_in_use(path: Path) -> bool:
    """Whether another process has the SQLite database at `path` open.

    A connection that has read a WAL database keeps a shared lock on it until
    it closes, so an exclusive lock, asked for without waiting, is refused
    exactly while a gateway or relay (or anything else) holds it open.
    """
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as conn:
            conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        return True
    return False


@dataclass(frozen=True, slots=True)
class ArchiveKind:
    """One side's archive: its manifest's format and version, what it is a backup of
    ("gateway", "relay") in messages, and the error every refusal raises."""

    format: str
    version: int
    of: str
    max_manifest: int
    error: type[Exception]

    # -- the manifest ------------------------------------------------------------------------
    def manifest_doc(self, data: bytes) -> dict[str, Any]:
        """The manifest's fields, once its format and version are this kind's. Malformed
        JSON raises ValueError, a document not an object AttributeError: the caller's
        to report as a malformed manifest."""
        doc: dict[str, Any] = json.loads(data)
        if doc.get("format") != self.format:
            raise self.error(f"not a {self.of} backup (format {doc.get('format')!r})")
        if doc.get("format_version") != self.version:
            raise self.error(
                f"backup format version {doc.get('format_version')!r}; this {self.of} reads"
                f" version {self.version}"
            )
        return doc

    def check_unique(self, files: Sequence[ArchiveEntry]) -> None:
        if len({e.name for e in files}) != len(files):
            raise self.error("the manifest lists a file twice")

    # -- writing -----------------------------------------------------------------------------
    def copy_sqlite(self, source: Path, target: Path) -> None:
        """One consistent copy of a live database: the whole backup in one step, so that
        it reads one snapshot while the owner's writer goes on (WAL)."""
        try:
            with (
                contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
                contextlib.closing(sqlite3.connect(target)) as dst,
            ):
                src.backup(dst)
                if dst.execute("PRAGMA quick_check").fetchone() != ("ok",):
                    raise self.error(f"{source}: the copy failed SQLite's check")
                # The copy is a plain database: a restore needs no -wal beside it.
                dst.execute("PRAGMA journal_mode = DELETE")
        except sqlite3.Error as exc:
            raise self.error(f"{source}: cannot copy the database: {exc}") from None

    def write(
        self,
        output: Path,
        manifest: bytes,
        entries: Sequence[tuple[ArchiveEntry, Path]],
        *,
        force: bool,
    ) -> None:
        """Write the archive whole beside `output`, then put it in place: replacing one
        only with `force`, so that two backups racing never overwrite each other."""
        draft = output.with_name(f".{output.name}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                with tarfile.open(fileobj=handle, mode="w:gz") as tar:
                    tar.addfile(_info(MANIFEST, len(manifest), 0o600), io.BytesIO(manifest))
                    for entry, path in entries:
                        with path.open("rb") as data:
                            tar.addfile(_info(entry.name, entry.size, entry.mode), data)
                handle.flush()
                os.fsync(handle.fileno())
            if force:
                os.replace(draft, output)
            else:
                os.link(draft, output)  # fails if another archive got there meanwhile
        except FileExistsError:
            raise self.error(f"{output} exists; give --force to replace it") from None
        finally:
            draft.unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------------------
    def read(self, archive: Path, load: Callable[[bytes], M], place: Place | None = None) -> M:
        """Check every member against the manifest `load` makes of the first; `place(entry)`
        gives a writable handle for each file's bytes (None: checked only)."""
        try:
            with tarfile.open(archive, mode="r:gz") as tar:
                first = tar.next()
                if first is None or first.name != MANIFEST or not first.isreg():
                    raise self.error(f"{archive}: no manifest first; not a {self.of} backup")
                if first.size > self.max_manifest:
                    raise self.error(f"{archive}: the manifest is too large")
                manifest = load(_extract(tar, first).read())
                expected = {e.name: e for e in manifest.files}
                seen: set[str] = set()
                while (member := tar.next()) is not None:
                    entry = expected.get(member.name)
                    if entry is None or member.name in seen:
                        raise self.error(f"{archive}: {member.name!r} is not in the manifest")
                    if not member.isreg():
                        raise self.error(f"{archive}: {member.name!r} is not a regular file")
                    with contextlib.ExitStack() as stack:
                        sink = stack.enter_context(place(entry)) if place else None
                        self._check(entry, _extract(tar, member), sink)
                    seen.add(member.name)
        except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as exc:
            raise self.error(f"{archive}: cannot read the archive: {exc}") from None
        missing = sorted(set(expected) - seen)
        if missing:
            raise self.error(f"{archive}: files of the manifest are missing: {', '.join(missing)}")
        return manifest

    def _check(self, entry: ArchiveEntry, source: IO[bytes], sink: IO[bytes] | None) -> None:
        digest, size = hashlib.sha256(), 0
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if sink is not None:
                sink.write(chunk)
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise self.error(f"{entry.name}: checksum mismatch (the archive is damaged)")


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, int(datetime.now(UTC).timestamp())
    return info


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    handle = tar.extractfile(member)
    assert handle is not None  # a regular file, checked by the caller
    return handle
