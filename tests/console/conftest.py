"""The console's browser tests: a real site, `bellhop console` as a subprocess, Chromium.

`console_site` is tests/sdk/conftest.py's whole site (relay, enrolled gateway, broker,
simulated devices), one per module; `console` is `bellhop console` serving it; `browser`
is Debian's chromium driven by Playwright. Without chromium the tests are skipped,
except in CI (CI=true), where that is a failure. BELLHOP_SCREENSHOTS=1 saves the main
pages under docs/images/.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tests.sdk.conftest import SdkSite, sdk_site_at
from tests.support.mosquitto import free_port, require_mosquitto
from tests.support.waiting import eventually

CHROMIUM: Final = Path("/usr/bin/chromium")
ROOT: Final = Path(__file__).resolve().parents[2]
IMAGES: Final = ROOT / "docs" / "images"
READY_S: Final = 20.0


@dataclass
class ConsoleProcess:
    """`bellhop console` on a free port, its output in a log file."""

    args: list[str]
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()  # from this worker's own range
        argv = [sys.executable, "-m", "bellhop_cli.main", "console"]
        argv += ["--listen", f"127.0.0.1:{self.port}", *self.args]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        eventually(self._ready, READY_S, "the console answering /healthz")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"the console exited {self.proc.returncode}:\n{self.tail()}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, and the exit status (it must stop by itself within `timeout`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def chromium_or_skip() -> Path:
    """Debian's chromium; skipped without it, a failure in CI."""
    if CHROMIUM.exists():
        return CHROMIUM
    reason = f"{CHROMIUM} is missing (Debian's chromium package; scripts/check installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=args
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def console_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkSite]:
    require_mosquitto()
    with sdk_site_at(tmp_path_factory.mktemp("console-site")) as site:
        yield site


@pytest.fixture(scope="module")
def console(
    console_site: SdkSite, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleProcess]:
    log = tmp_path_factory.mktemp("console") / "console.log"
    process = ConsoleProcess(
        ["--cloud", console_site.relay_url, "--lan", console_site.lan_target], log
    )
    process.start()
    try:
        yield process
    finally:
        status = process.stop()
        # uvicorn re-raises the signal once it has shut down: killed by SIGTERM, cleanly.
        assert status in (0, -signal.SIGTERM), f"the console exited {status}:\n{process.tail()}"
        assert "console stopped" in process.tail(), process.tail()


def screenshot(page: Any, name: str) -> None:
    """Save the page under docs/images/ when BELLHOP_SCREENSHOTS=1 (a normal run writes nothing)."""
    if os.environ.get("BELLHOP_SCREENSHOTS") != "1":
        return
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)
