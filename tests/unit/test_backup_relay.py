"""The relay's backup archive on its embedded SQLite: the manifest, the checksums, the
refusals of a restore, and the gateways it marks for a snapshot."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sqlite3
import stat
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from bellhop_cloud.auth.keys import load_or_create_signing_key
from bellhop_cloud.backup import BackupError, create_backup, restore_backup, verify_backup
from bellhop_cloud.config import RelayConfig, load_config
from bellhop_cloud.db.migrate import head_revision
from bellhop_cloud.db.schema import bridge_resyncs, gateways, hotels, organisations
from bellhop_cloud.db.store import Store
from sqlalchemy.engine import make_url


def _config(root: Path) -> RelayConfig:
    root.mkdir(parents=True, exist_ok=True)
    return load_config(
        database_url=f"sqlite:///{root / 'relay.db'}",
        signing_key_path=str(root / "signing-key.pem"),
    )


async def _populate(config: RelayConfig, gateway_ids: list[str], revoked: str = "") -> None:
    now = datetime.now(UTC)
    store = Store.open(config)
    try:
        await store.migrate()
        async with store.write() as conn:
            await conn.execute(organisations.insert().values(id="org_1", name="o", created_at=now))
            await conn.execute(
                hotels.insert().values(
                    id="htl_1", org_id="org_1", name="h", timezone="UTC", created_at=now
                )
            )
            for gateway_id in gateway_ids:
                await conn.execute(
                    gateways.insert().values(
                        id=gateway_id,
                        org_id="org_1",
                        hotel_id="htl_1",
                        name=gateway_id,
                        public_key=b"\0" * 32,
                        enrolled_at=now,
                        enrolment_token_id="tok",
                        revoked_at=now if gateway_id == revoked else None,
                    )
                )
    finally:
        await store.close()


def _path(config: RelayConfig) -> Path:
    return Path(make_url(config.database_url).database or "")


def _rows(config: RelayConfig, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(_path(config))) as db:
        return list(db.execute(sql).fetchall())


@pytest.fixture
def relay(tmp_path: Path) -> RelayConfig:
    config = _config(tmp_path / "old")
    asyncio.run(_populate(config, ["gw_a", "gw_b", "gw_gone"], revoked="gw_gone"))
    load_or_create_signing_key(config.signing_key_path)
    return config


def test_a_restore_brings_the_database_and_key_back_and_marks_every_gateway(
    relay: RelayConfig, tmp_path: Path
) -> None:
    archive = tmp_path / "relay.tar.gz"
    manifest = create_backup(relay, archive)
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert manifest.backend == "sqlite"
    assert manifest.schema_revision == head_revision()
    assert [e.name for e in manifest.files] == ["database/relay.db", "keys/signing-key.pem"]
    assert verify_backup(archive) == manifest

    target = _config(tmp_path / "new")
    _, marked = restore_backup(target, archive)
    assert marked == 2  # the revoked gateway is never asked
    assert target.signing_key_path.read_bytes() == relay.signing_key_path.read_bytes()
    assert stat.S_IMODE(target.signing_key_path.stat().st_mode) == 0o600
    got = _rows(target, f"SELECT gateway_id, reason FROM {bridge_resyncs.name} ORDER BY 1")
    assert got == [("gw_a", "restore"), ("gw_b", "restore")]
    assert _rows(target, "SELECT count(*) FROM gateways") == [(3,)]


def test_a_restore_refuses_a_database_with_data_or_another_key_without_force(
    relay: RelayConfig, tmp_path: Path
) -> None:
    archive = tmp_path / "relay.tar.gz"
    create_backup(relay, archive)
    with pytest.raises(BackupError, match="holds a database; give --force"):
        restore_backup(relay, archive)

    other = _config(tmp_path / "other")
    other.signing_key_path.write_text("another key")
    with pytest.raises(BackupError, match="differs from the backup's key; give --force"):
        restore_backup(other, archive)
    assert not _path(other).exists()  # nothing written
    restore_backup(other, archive, force=True)
    assert other.signing_key_path.read_bytes() == relay.signing_key_path.read_bytes()


def test_a_restore_refuses_a_database_a_relay_has_open(relay: RelayConfig, tmp_path: Path) -> None:
    archive = tmp_path / "relay.tar.gz"
    create_backup(relay, archive)
    held = sqlite3.connect(_path(relay))
    try:
        held.execute("SELECT count(*) FROM gateways").fetchone()
        with pytest.raises(BackupError, match="open in another process"):
            restore_backup(relay, archive, force=True)
    finally:
        held.close()
    restore_backup(relay, archive, force=True)


def test_a_backup_of_another_backend_is_refused(relay: RelayConfig, tmp_path: Path) -> None:
    archive = tmp_path / "relay.tar.gz"
    create_backup(relay, archive)
    on_postgres = load_config(database_url="postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(BackupError, match="sqlite relay, this one is on postgresql"):
        restore_backup(on_postgres, archive)


def _rewrite(archive: Path, change: dict[str, bytes | None]) -> Path:
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    out = archive.with_name("changed.tar.gz")
    with tarfile.open(out, "w:gz") as tar:
        for name, data in {**members, **change}.items():
            if data is not None:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


def _manifest_with(archive: Path, **change: object) -> bytes:
    with tarfile.open(archive, "r:gz") as tar:
        doc = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    return json.dumps({**doc, **change}).encode()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"keys/signing-key.pem": b"tampered"}, "checksum mismatch"),
        ({"database/relay.db": None}, "missing: database/relay.db"),
        ({"keys/other.pem": b"x"}, "not in the manifest"),
        ({"manifest.json": b"[]"}, "malformed"),
    ],
)
def test_a_damaged_archive_is_refused_before_anything_is_written(
    relay: RelayConfig, tmp_path: Path, damage: dict[str, bytes | None], message: str
) -> None:
    archive = tmp_path / "relay.tar.gz"
    create_backup(relay, archive)
    target = _config(tmp_path / "new")
    with pytest.raises(BackupError, match=message):
        restore_backup(target, _rewrite(archive, damage))
    assert list(target.signing_key_path.parent.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "bellhop-edge-backup"}, "not a relay backup"),
        ({"format_version": 2}, "format version 2"),
        ({"backend": "oracle"}, "unknown backend"),
        ({"schema_revision": "9999"}, "newer than this relay's"),
    ],
)
def test_a_manifest_this_relay_cannot_take_is_refused(
    relay: RelayConfig, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    archive = tmp_path / "relay.tar.gz"
    create_backup(relay, archive)
    changed = _rewrite(archive, {"manifest.json": _manifest_with(archive, **change)})
    with pytest.raises(BackupError, match=message):
        restore_backup(_config(tmp_path / "new"), changed)


def test_the_archive_is_not_overwritten_without_force(relay: RelayConfig, tmp_path: Path) -> None:
    archive = tmp_path / "relay.tar.gz"
    archive.write_text("older")
    with pytest.raises(BackupError, match="exists; give --force"):
        create_backup(relay, archive)
    create_backup(relay, archive, force=True)
    verify_backup(archive)
