"""The gateway's backup archive: what it holds, its manifest, and every refusal of a restore."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from bellhop_edge.backup import (
    BackupError,
    create_backup,
    database_in_use,
    restore_backup,
    verify_backup,
)
from bellhop_edge.config import EdgeConfig, load_config

HOTEL = "lisbon-1"
SECRET = b"-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n"


def _config(root: Path, hotel_id: str = HOTEL) -> EdgeConfig:
    return load_config(
        overrides={
            "hotel_id": hotel_id,
            "data_dir": str(root / "edge"),
            "api": {"tokens_file": str(root / "etc" / "tokens.json")},
        }
    )


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[EdgeConfig, sqlite3.Connection]]:
    """A gateway's data directory with its store held open, as a running gateway holds it."""
    config = _config(tmp_path / "old")
    data = config.data_dir
    (data / "bridge").mkdir(parents=True)
    (data / "broker" / "tls").mkdir(parents=True)
    db = sqlite3.connect(data / "edge.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA user_version = 6")
    db.execute("CREATE TABLE devices (id TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO devices VALUES (?)", [(f"d{i}",) for i in range(100)])
    (data / "bridge" / "key.pem").write_bytes(SECRET)
    (data / "bridge" / "key.pem").chmod(0o600)
    ident = {"gateway_id": "gw_1", "hotel_id": HOTEL, "relay_url": "http://relay.test"}
    (data / "bridge" / "identity.json").write_text(json.dumps(ident))
    (data / "bridge" / "sent-mark").write_text("42\n")
    (data / "broker" / "accounts.json").write_text("{}")
    (data / "broker" / "tls" / "ca.pem").write_text("ca")
    # Scratch a backup must leave out: a draft of write_atomic, a lock file.
    (data / "bridge" / ".sent-mark.abcd1234").write_text("7\n")
    (data / "broker" / ".accounts.json.lock").write_text("")
    assert config.api.tokens_file is not None
    config.api.tokens_file.parent.mkdir(parents=True)
    config.api.tokens_file.write_text('{"tokens": []}')
    try:
        yield config, db
    finally:
        db.close()


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _rewrite(archive: Path, change: dict[str, bytes | None]) -> Path:
    """A copy of `archive` with members replaced, added or (None) left out, in order."""
    members = {**_members(archive), **change}
    out = archive.with_name("changed.tar.gz")
    with tarfile.open(out, "w:gz") as tar:
        for name, data in members.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


def _manifest(archive: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads(_members(archive)["manifest.json"])
    return doc


def test_a_backup_of_a_running_gateway_restores_whole_elsewhere(
    live: tuple[EdgeConfig, sqlite3.Connection], tmp_path: Path
) -> None:
    config, db = live
    archive = tmp_path / "gw.tar.gz"
    manifest = create_backup(config, archive)

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert (manifest.hotel_id, manifest.gateway_id, manifest.schema_version) == (HOTEL, "gw_1", 6)
    names = [e.name for e in manifest.files]
    # The store after the sent mark, which then never says more was sent than it holds.
    assert [n for n in names if n.startswith("data/")][-1] == "data/edge.db"
    assert set(names) == {
        "data/edge.db",
        "data/bridge/key.pem",
        "data/bridge/identity.json",
        "data/bridge/sent-mark",
        "data/broker/accounts.json",
        "data/broker/tls/ca.pem",
        "config/api.tokens_file",
    }
    members = _members(archive)
    for entry in manifest.files:
        assert hashlib.sha256(members[entry.name]).hexdigest() == entry.sha256
    assert verify_backup(archive) == manifest

    # The gateway goes on writing after the backup: the archive holds the state of its moment.
    db.execute("INSERT INTO devices VALUES ('later')")
    target = _config(tmp_path / "new")
    restore_backup(target, archive)
    restored = sqlite3.connect(target.data_dir / "edge.db")
    try:
        assert restored.execute("SELECT count(*) FROM devices").fetchone() == (100,)
    finally:
        restored.close()
    assert (target.data_dir / "bridge" / "key.pem").read_bytes() == SECRET
    assert stat.S_IMODE((target.data_dir / "bridge" / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(target.data_dir.stat().st_mode) == 0o700
    assert (target.data_dir / "bridge" / "sent-mark").read_text() == "42\n"
    assert not (target.data_dir / "bridge" / ".sent-mark.abcd1234").exists()
    assert target.api.tokens_file is not None
    assert target.api.tokens_file.read_text() == '{"tokens": []}'
    # Nothing left beside the data directory.
    assert sorted(p.name for p in target.data_dir.parent.iterdir()) == ["edge", "etc"]


def test_the_archive_is_not_overwritten_without_force(
    live: tuple[EdgeConfig, sqlite3.Connection], tmp_path: Path
) -> None:
    config, _ = live
    archive = tmp_path / "gw.tar.gz"
    archive.write_text("older")
    with pytest.raises(BackupError, match="exists"):
        create_backup(config, archive)
    assert archive.read_text() == "older"
    create_backup(config, archive, force=True)
    verify_backup(archive)
    with pytest.raises(BackupError, match="outside the data directory"):
        create_backup(config, config.data_dir / "gw.tar.gz")


def test_a_restore_refuses_a_running_gateway_and_a_non_empty_target(
    live: tuple[EdgeConfig, sqlite3.Connection], tmp_path: Path
) -> None:
    config, db = live
    archive = tmp_path / "gw.tar.gz"
    create_backup(config, archive)
    assert database_in_use(config.data_dir / "edge.db")
    # Over the running gateway's own directory: never, even with --force.
    with pytest.raises(BackupError, match="open in another process"):
        restore_backup(config, archive, force=True)
    db.close()
    assert not database_in_use(config.data_dir / "edge.db")
    with pytest.raises(BackupError, match="not empty; give --force"):
        restore_backup(config, archive)
    (config.data_dir / "stray").write_text("x")
    restore_backup(config, archive, force=True)
    assert not (config.data_dir / "stray").exists()
    assert (config.data_dir / "bridge" / "identity.json").is_file()


def test_a_restore_refuses_another_hotels_backup(
    live: tuple[EdgeConfig, sqlite3.Connection], tmp_path: Path
) -> None:
    archive = tmp_path / "gw.tar.gz"
    create_backup(live[0], archive)
    with pytest.raises(BackupError, match=r"hotel 'lisbon-1'.*'porto-2'"):
        restore_backup(_config(tmp_path / "other", "porto-2"), archive)


def test_a_config_file_that_differs_is_replaced_only_with_force(
    live: tuple[EdgeConfig, sqlite3.Connection], tmp_path: Path
) -> None:
    archive = tmp_path / "gw.tar.gz"
    create_backup(live[0], archive)
    target = _config(tmp_path / "new")
    assert target.api.tokens_file is not None
    target.api.tokens_file.parent.mkdir(parents=True)
    target.api.tokens_file.write_text("theirs")
    with pytest.raises(BackupError, match="differs from the backup"):
        restore_backup(target, archive)
    assert not target.data_dir.exists()  # refused before anything was written
    restore_backup(target, archive, force=True)
    assert target.api.tokens_file.read_text() == '{"tokens": []}'


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"data/bridge/key.pem": b"tampered"}, "checksum mismatch"),
        ({"data/bridge/sent-mark": None}, "missing: data/bridge/sent-mark"),
        ({"data/extra": b"x"}, "not in the manifest"),
        ({"manifest.json": b"{not json"}, "malformed"),
    ],
)
def test_a_damaged_archive_is_refused_before_anything_is_written(
    live: tuple[EdgeConfig, sqlite3.Connection],
    tmp_path: Path,
    damage: dict[str, bytes | None],
    message: str,
) -> None:
    archive = tmp_path / "gw.tar.gz"
    create_backup(live[0], archive)
    changed = _rewrite(archive, damage)
    with pytest.raises(BackupError, match=message):
        verify_backup(changed)
    target = _config(tmp_path / "new")
    with pytest.raises(BackupError, match=message):
        restore_backup(target, changed)
    assert not target.data_dir.parent.exists()  # not even a staging directory beside it


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "something-else"}, "not a gateway backup"),
        ({"format_version": 99}, "format version 99"),
        ({"schema_version": 999}, "newer than this gateway"),
    ],
)
def test_a_manifest_this_gateway_cannot_take_is_refused(
    live: tuple[EdgeConfig, sqlite3.Connection],
    tmp_path: Path,
    change: dict[str, object],
    message: str,
) -> None:
    archive = tmp_path / "gw.tar.gz"
    create_backup(live[0], archive)
    doc = {**_manifest(archive), **change}
    changed = _rewrite(archive, {"manifest.json": json.dumps(doc).encode()})
    with pytest.raises(BackupError, match=message):
        restore_backup(_config(tmp_path / "new"), changed)


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "data/../../x", "elsewhere/x"])
def test_a_file_name_outside_the_archive_layout_is_refused(
    live: tuple[EdgeConfig, sqlite3.Connection], tmp_path: Path, name: str
) -> None:
    archive = tmp_path / "gw.tar.gz"
    create_backup(live[0], archive)
    doc = _manifest(archive)
    files = doc["files"]
    assert isinstance(files, list)
    files.append({**files[0], "name": name})
    changed = _rewrite(archive, {"manifest.json": json.dumps(doc).encode(), name: b""})
    with pytest.raises(BackupError, match="unsafe file name"):
        verify_backup(changed)


def test_not_an_archive_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(BackupError, match="cannot read the archive"):
        verify_backup(junk)
    with pytest.raises(BackupError, match="no such file"):
        verify_backup(tmp_path / "absent.tar.gz")
