"""Probing `bellhop ctl`'s saved session: a file cut short, edited by hand or of the
wrong types is "not logged in", never a traceback; it is written private."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from bellhop_cli.ctl.session import FILE_NAME, Session
from tests.sdk.test_ctl import BELLHOP

UNREACHABLE = "http://127.0.0.1:9"


def run_ctl(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_")}
    return subprocess.run(
        [BELLHOP, "ctl", *args],
        capture_output=True,
        text=True,
        env={**env, "XDG_CONFIG_HOME": str(config), "NO_COLOR": "1"},
        timeout=60,
        check=False,
    )


BASE = {"cloud_url": UNREACHABLE, "refresh_token": "r-secret", "access_token": "a-secret"}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({**BASE, "access_expires_at": "soon"}),
        json.dumps({**BASE, "cloud_url": 7}),
        json.dumps({**BASE, "refresh_token": ["x"]}),
        json.dumps({**BASE, "access_expires_at": True}),
        json.dumps({**BASE, "access_expires_at": 1e400}),
        '{"cloud_url": "http://127.0.0.1:9", "access',
        "\x00\xff",
        "[]",
    ],
)
def test_a_damaged_session_is_not_logged_in(tmp_path: Path, text: str) -> None:
    (tmp_path / "bellhop").mkdir()
    (tmp_path / "bellhop" / FILE_NAME).write_text(text)
    assert Session.load(tmp_path / "bellhop" / FILE_NAME) is None
    done = run_ctl(tmp_path, "hotels")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().endswith("(not_logged_in)")
    assert "Traceback" not in done.stderr
    assert "secret" not in done.stdout + done.stderr


def test_the_session_is_written_private_and_never_printed(tmp_path: Path) -> None:
    path = tmp_path / "bellhop" / FILE_NAME
    path.parent.mkdir(mode=0o755)
    path.write_text("{}")
    path.chmod(0o644)  # a file left readable by an older copy or by hand
    Session(cloud_url=UNREACHABLE, refresh_token="r-secret", access_token="a-secret").save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Session.load(path) == Session(
        cloud_url=UNREACHABLE, refresh_token="r-secret", access_token="a-secret"
    )
    done = run_ctl(tmp_path, "hotels")
    assert done.returncode == 9, done.stderr  # unreachable: the relay is not there
    assert "secret" not in done.stdout + done.stderr
