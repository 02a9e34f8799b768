"""docs/sdk.md's examples run as they stand: each fenced block whose first line is
`# runnable` (```python run by the venv's Python, ```sh by bash with the venv's bin first
on PATH) against a real relay, enrolled gateway, broker and simulated devices, its output
checked against the block's `# expect: <regex>` lines (each must match a line)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sdk.conftest import LIGHT, SdkSite

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "sdk.md"
BLOCK = re.compile(r"^```(python|sh)\n# runnable\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^# expect: (.+)$", re.MULTILINE)
RUN_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class Example:
    language: str
    code: str
    heading: str
    line: int

    @property
    def expected(self) -> list[str]:
        return EXPECT.findall(self.code)

    def __str__(self) -> str:
        return f"{GUIDE.name}:{self.line} ({self.heading}, {self.language})"


def examples(text: str) -> list[Example]:
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()]
        headings = re.findall(r"^#+ (.+)$", before, re.MULTILINE)
        found.append(
            Example(
                match[1],
                match[2],
                headings[-1] if headings else "",
                before.count("\n") + 1,
            )
        )
    return found


def test_examples_are_found_with_their_expectations() -> None:
    text = "# A\n```python\n# runnable\n# expect: ^x$\nprint('x')\n```\n```python\nno\n```\n"
    (example,) = examples(text)
    assert example.language == "python"
    assert example.expected == ["^x$"]
    assert example.heading == "A"
    found = examples(GUIDE.read_text())
    assert len(found) >= 8
    assert all(e.expected for e in found), [str(e) for e in found if not e.expected]
    assert {e.language for e in found} == {"python", "sh"}


def _env(site: SdkSite, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BELLHOP_", "PYTHON")) and not k.lower().endswith("_proxy")
    }
    return {
        **env,
        "PATH": f"{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        "XDG_CONFIG_HOME": str(home),
        "NO_COLOR": "1",
        "BELLHOP_CLOUD_URL": site.relay_url,
        "BELLHOP_LAN": site.lan_target,
        "BELLHOP_HOTEL": site.hotel_id,
        "BELLHOP_EMAIL": site.manager.email,
        "BELLHOP_PASSWORD": site.manager.password,
        "BELLHOP_LAN_TOKEN": site.lan_token,
        "BELLHOP_DEVICE": LIGHT,
    }


def _run(example: Example, env: dict[str, str], workdir: Path) -> str | None:
    """None when it ran and printed what it expects; else what went wrong."""
    if example.language == "python":
        argv = [str(ROOT / ".venv" / "bin" / "python"), "-c", example.code]
    else:
        argv = ["bash", "-euo", "pipefail", "-c", example.code]
    try:
        done = subprocess.run(
            argv,
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"{example}: still running after {RUN_TIMEOUT_S:g} s"
    if done.returncode != 0:
        return f"{example}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    missing = [p for p in example.expected if not re.search(p, done.stdout, re.MULTILINE)]
    if missing:
        return f"{example}: no line matches {missing}\n{done.stdout}\n{done.stderr}"
    return None


@pytest.mark.broker
def test_every_runnable_example_runs_against_real_processes(
    sdk_site: SdkSite, tmp_path: Path
) -> None:
    found = examples(GUIDE.read_text())
    # Each in a directory (and config directory) of its own, all at once: start-up dominates.
    jobs = []
    for n, example in enumerate(found):
        workdir = tmp_path / f"example-{n}"
        workdir.mkdir()
        jobs.append((example, _env(sdk_site, workdir / "config"), workdir))
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        failures = [f for f in pool.map(lambda job: _run(*job), jobs) if f is not None]
    assert not failures, "\n\n".join(failures)
