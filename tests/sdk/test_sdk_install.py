"""The SDK installs alone: a fresh virtual environment with bellhop-sdk and what it needs
(bellhop-proto, grpcio, httpx, httpx-sse, protobuf), no server dependency.

The environment is made by the project's uv from the lock file (`uv sync --package
bellhop-sdk --no-dev --frozen --no-editable` into UV_PROJECT_ENVIRONMENT): the versions the
project tests with, taken from uv's cache when it has them (no network needed then) and
downloaded on a clean machine. `pip install ./proto ./mobile_sdk` (docs/sdk.md) installs
the same set, resolved afresh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Server-side packages that must not come along with the SDK.
ABSENT = (
    "fastapi",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "aiomqtt",
    "paho",
    "redis",
    "uvicorn",
    "starlette",
    "pydantic",
    "bellhop_edge",
    "bellhop_cloud",
    "bellhop_bridge",
    "bellhop_devices",
)
PRESENT = ("bellhop_sdk", "bellhop.lan.v1.lan_pb2", "grpc", "httpx", "httpx_sse")
CHECK = """
import importlib, importlib.util, json, sys
import bellhop_sdk
from bellhop_sdk import BellhopClient, SyncBellhopClient, StaticToken
client = BellhopClient(cloud_url="http://127.0.0.1:9", lan_target="127.0.0.1:9",
                       credentials=StaticToken("t"))
for name in {present!r}:
    importlib.import_module(name)
print(json.dumps({{
    "sdk": bellhop_sdk.__file__,
    "found": [n for n in {absent!r} if importlib.util.find_spec(n) is not None],
    "loaded": sorted(m for m in sys.modules if m.split(".")[0] in {absent!r}),
    "public": len(bellhop_sdk.__all__),
}}))
"""


def _uv() -> str:
    for candidate in (ROOT / ".tools" / "bin" / "uv", shutil.which("uv")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    pytest.fail("no uv: run ./run setup (it installs uv into .tools/)")


def test_the_sdk_installs_and_imports_without_any_server_dependency(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    sync = subprocess.run(
        [
            _uv(),
            "sync",
            "--package",
            "bellhop-sdk",
            "--no-dev",
            "--frozen",
            "--no-editable",
            "--python",
            sys.executable,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert sync.returncode == 0, sync.stderr

    python = venv / "bin" / "python"
    code = CHECK.format(present=PRESENT, absent=ABSENT)
    # -I: isolated, so neither the repository nor PYTHONPATH can lend a module.
    check = subprocess.run(
        [str(python), "-I", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["sdk"].startswith(str(venv)), report  # the installed copy, not the tree's
    assert report["found"] == []
    assert report["loaded"] == []
    assert report["public"] > 40

    listed = subprocess.run(
        [_uv(), "pip", "list", "--python", str(python), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = {p["name"] for p in json.loads(listed.stdout)}
    assert {"bellhop-sdk", "bellhop-proto", "grpcio", "httpx", "protobuf"} <= names
    assert not names & {"bellhop", "bellhop-edge", "bellhop-cloud", "fastapi", "sqlalchemy"}
