"""`bellhop ctl` as people and scripts run it: the real command against a real relay, an
enrolled gateway, a broker and simulated devices (one site for the module), with the
session kept in a temporary config directory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import secrets
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sdk.conftest import DOOR, ENV, LIGHT, THERMOSTAT, SdkSite
from tests.support.waiting import until

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
BELLHOP = str(ROOT / ".venv" / "bin" / "bellhop")
RUN_TIMEOUT_S = 30.0


@dataclass
class Ctl:
    """`bellhop ctl` with its own config directory and the site's addresses."""

    site: SdkSite
    config: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_")}
        return {**env, "XDG_CONFIG_HOME": str(self.config), "NO_COLOR": "1", **extra}

    def argv(self, *args: str) -> list[str]:
        return [BELLHOP, "ctl", *args]

    def run(
        self, *args: str, stdin: str | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env(**env),
            timeout=RUN_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def doc(self, *args: str) -> dict[str, Any]:
        """The one JSON document a call prints with --json."""
        lines = self.ok(*args, "--json").splitlines()
        assert len(lines) == 1, lines
        doc: dict[str, Any] = json.loads(lines[0])
        return doc

    def many(self, *calls: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
        """Independent calls at once (each is a process of its own: start-up dominates)."""
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            return list(pool.map(lambda args: self.run(*args), calls))

    @property
    def session_file(self) -> Path:
        return self.config / "bellhop" / "ctl-session.json"


@pytest.fixture(scope="module")
def ctl(sdk_site: SdkSite, tmp_path_factory: pytest.TempPathFactory) -> Ctl:
    """Logged in as the manager (password on stdin), both paths saved."""
    tool = Ctl(sdk_site, tmp_path_factory.mktemp("ctl-config"))
    done = tool.run(
        "login",
        "--cloud",
        sdk_site.relay_url,
        "--lan",
        sdk_site.lan_target,
        "--email",
        sdk_site.manager.email,
        "--password-stdin",
        stdin=sdk_site.manager.password + "\n",
    )
    assert done.returncode == 0, done.stderr
    assert "served by LAN" in done.stdout
    return tool


def test_login_keeps_a_private_session_without_the_password(ctl: Ctl) -> None:
    mode = stat.S_IMODE(ctl.session_file.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(ctl.session_file.parent.stat().st_mode) == 0o700
    saved = json.loads(ctl.session_file.read_text())
    assert ctl.site.manager.password not in ctl.session_file.read_text()
    assert saved["refresh_token"]
    assert saved["cloud_url"] == ctl.site.relay_url
    assert saved["lan_target"] == ctl.site.lan_target


def test_reads_say_which_path_served_them(ctl: Ctl) -> None:
    site = ctl.site
    calls: list[tuple[str, ...]] = [("hotels",), ("hotels", "--via", "cloud")]
    for via in ("lan", "cloud"):
        calls.append(("rooms", site.hotel_id, "--via", via, "--json"))
        calls.append(("devices", site.hotel_id, "--room", "101", "--via", via, "--json"))
    done = ctl.many(*calls)
    assert all(d.returncode == 0 for d in done), [d.stderr for d in done]
    lan, cloud = done[0].stdout, done[1].stdout
    assert site.hotel_id in lan
    assert f"served by LAN {site.lan_target}" in lan
    assert site.hotel_id in cloud
    assert f"served by CLOUD {site.relay_url}" in cloud

    for n, via in enumerate(("lan", "cloud")):
        rooms = json.loads(done[2 + 2 * n].stdout)
        assert rooms["served"]["path"] == via
        assert rooms["served"]["as_of"]
        assert [r["room_id"] for r in rooms["data"]] == ["101"]
        devices = json.loads(done[3 + 2 * n].stdout)
        assert {d["device_id"] for d in devices["data"]} == {THERMOSTAT, LIGHT, DOOR, ENV}
        assert all(d["freshness"]["path"] == via for d in devices["data"])


async def test_device_show_gives_reported_desired_delta_and_freshness(ctl: Ctl) -> None:
    site = ctl.site
    await site.devices.report_state(THERMOSTAT, {"temperature": 22.5, "setpoint": 21})
    shown = ctl.ok("device", "show", site.hotel_id, THERMOSTAT)
    for label in ("reported:", "desired:", "delta:", "freshness:", "served by LAN"):
        assert label in shown
    # Over the cloud the reported values arrive once the bridge carried them.

    def via_cloud() -> dict[str, Any] | None:
        doc = ctl.doc("device", "show", site.hotel_id, THERMOSTAT, "--via", "cloud")
        return doc if doc["data"]["reported"].get("temperature") == 22.5 else None

    doc = await until(via_cloud, 20, "the reported temperature over the cloud", every=0.1)
    assert doc["served"]["path"] == "cloud"
    assert doc["data"]["desired"] is not None
    assert "delta" in doc["data"]


def test_command_keeps_its_id_and_a_rejection_has_its_exit_code(ctl: Ctl) -> None:
    site = ctl.site
    command_id = f"cmd-ctl-{secrets.token_hex(6)}"
    doc = ctl.doc(
        "command", site.hotel_id, LIGHT, "set_light", "--param", "on=true", "--id", command_id
    )
    assert doc["served"]["path"] == "lan"
    assert doc["data"]["command_id"] == command_id
    assert doc["data"]["status"] == "succeeded"
    assert doc["data"]["result"] == {"on": True}
    assert command_id in site.devices.received(LIGHT)

    rejected = ctl.run(
        "command", site.hotel_id, LIGHT, "set_light", "--param", "fail=true", "--via", "cloud"
    )
    assert rejected.returncode == 11
    assert rejected.stdout == ""
    (line,) = rejected.stderr.splitlines()
    assert line.startswith("error: bad_params: fail")
    assert line.endswith("(failed)")


def test_fleet_shows_progress_and_json_parses(ctl: Ctl) -> None:
    site = ctl.site
    people, scripts = ctl.many(
        ("fleet", site.hotel_id, "ping", "--room", "101"),
        ("fleet", site.hotel_id, "ping", "--all", "--json", "--via", "cloud"),
    )
    assert people.returncode == 0, people.stderr
    assert "fleet ping" in people.stderr  # the progress bar, on stderr
    assert "4/4" in people.stderr
    assert "4 succeeded" in people.stdout
    assert "served by LAN" in people.stdout

    assert scripts.returncode == 0, scripts.stderr
    doc = json.loads(scripts.stdout)
    assert doc["served"]["path"] == "cloud"
    assert doc["data"]["counts"] == {"succeeded": 4}
    assert {c["device_id"] for c in doc["data"]["commands"]} == {THERMOSTAT, LIGHT, DOOR, ENV}
    progress = [line for line in scripts.stderr.splitlines() if line.startswith("progress ")]
    assert len(progress) == 4
    assert progress[-1].startswith("progress 4/4 ")


async def test_alerts_and_acknowledgement(ctl: Ctl) -> None:
    site = ctl.site
    await site.devices.breach()

    def breaches() -> list[dict[str, Any]]:
        doc = ctl.doc("alerts", site.hotel_id, "--active")
        return [a for a in doc["data"] if a["kind"] == "breach" and a["state"] == "raised"]

    raised = await until(breaches, 20, "a raised breach alert", every=0.1)
    alert_id = raised[0]["alert_id"]
    assert "breach" in ctl.ok("alerts", site.hotel_id)
    first = ctl.doc("ack", site.hotel_id, alert_id, "--note", "on my way")
    assert first["data"]["outcome"] == "acknowledged"
    assert first["served"]["path"] == "lan"

    def acknowledged_again() -> str | None:
        again = ctl.ok("ack", site.hotel_id, alert_id)
        return again if "already_acknowledged" in again else None

    again = await until(acknowledged_again, 20, "already_acknowledged", every=0.1)
    assert "served by LAN" in again


async def _follow_until_state(ctl: Ctl, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start `ctl follow`, report states until it prints one: the process and that line."""
    proc = await asyncio.create_subprocess_exec(
        *ctl.argv("follow", ctl.site.hotel_id, *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ctl.env(),
    )
    assert proc.stdout is not None
    reported: set[int] = set()
    async with asyncio.timeout(20):
        while True:
            reported.add(await ctl.site.devices.report_state(THERMOSTAT, {"temperature": 23}))
            try:
                line = (await asyncio.wait_for(proc.stdout.readline(), 0.5)).decode()
            except TimeoutError:
                continue
            assert line, "follow ended"
            if "state" in line and THERMOSTAT in line and any(str(t) in line for t in reported):
                return proc, line
            if "state" in line and THERMOSTAT in line and "--json" not in args:
                return proc, line


async def test_follow_prints_live_events_and_stops_on_signals(ctl: Ctl) -> None:
    proc, line = await _follow_until_state(ctl)
    assert "[LAN] state r101-thermostat room 101" in line
    proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(proc.wait(), 10) == 130
    assert proc.stderr is not None
    assert b"Traceback" not in await proc.stderr.read()

    proc, line = await _follow_until_state(ctl, "--json", "--via", "cloud")
    doc = json.loads(line)
    assert doc["kind"] == "event"
    assert doc["served"]["path"] == "cloud"
    assert doc["data"]["kind"] == "state"
    assert doc["data"]["key"][1] == THERMOSTAT
    proc.terminate()
    assert await asyncio.wait_for(proc.wait(), 10) == 143
    assert proc.stderr is not None
    assert b"Traceback" not in await proc.stderr.read()


async def test_history(ctl: Ctl) -> None:
    site = ctl.site
    ts = int(time.time() * 1000) - secrets.randbelow(10**6)
    await site.devices.telemetry(ENV, {"humidity": 43.25}, ts)

    def history() -> dict[str, Any] | None:
        doc = ctl.doc("history", site.hotel_id, ENV, "--metric", "humidity", "--since", "1h")
        return doc if any(p["value"] == 43.25 for p in doc["data"]) else None

    doc = await until(history, 20, "the humidity reading in the history", every=0.1)
    assert doc["served"]["path"] == "lan"
    table = ctl.ok("history", site.hotel_id, ENV, "--metric", "humidity", "--limit", "1000")
    assert "43.25" in table
    assert "served by LAN" in table


def test_errors_are_one_line_with_a_distinct_exit_code(ctl: Ctl, tmp_path: Path) -> None:
    stranger = Ctl(ctl.site, tmp_path)
    missing, usage = ctl.many(
        ("devices", "htl_no_such_hotel", "--via", "cloud"), ("command", ctl.site.hotel_id)
    )
    anonymous = stranger.run("hotels", "--cloud", ctl.site.relay_url)
    assert missing.returncode == 5
    assert missing.stderr.strip().splitlines() == [missing.stderr.strip()]
    assert missing.stderr.startswith("error: ")
    assert missing.stderr.strip().endswith("(not_found)")

    assert anonymous.returncode == 3
    assert anonymous.stderr.strip().endswith("(not_logged_in)")
    assert usage.returncode == 2


def test_lan_token_login_and_logout(ctl: Ctl, tmp_path: Path) -> None:
    staff = Ctl(ctl.site, tmp_path)
    done = staff.run(
        "login", "--lan-token", "--lan", ctl.site.lan_target, BELLHOP_LAN_TOKEN=ctl.site.lan_token
    )
    assert done.returncode == 0, done.stderr
    doc = staff.doc("devices", ctl.site.hotel_id)
    assert doc["served"] == {
        "path": "lan",
        "where": ctl.site.lan_target,
        "as_of": doc["served"]["as_of"],
        "stale_since": None,
    }
    assert ctl.site.lan_token in staff.session_file.read_text()
    staff.ok("logout")
    assert not staff.session_file.exists()
    assert staff.run("hotels").returncode == 3
