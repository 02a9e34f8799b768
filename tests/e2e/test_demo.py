"""The README's main command: a whole demo hotel, narrated, stopping cleanly."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_tells_the_whole_story_and_stops_cleanly() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bellhop_cli.main",
            "demo",
            "--rooms",
            "2",
            "--interval",
            "0.5",
            "--duration",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = run.stdout
    assert run.returncode == 0, run.stderr[-2000:]
    assert "per-device credentials and ACL" in out
    assert re.search(r"\d+/11 simulated devices connected", out)
    assert "set_setpoint(22.5)" in out
    assert "COMMAND_STATUS_SUCCEEDED" in out
    assert "same result, not executed twice" in out
    assert "ALERT raised: device_offline on r101-door_sensor" in out
    assert "front desk acknowledged alert" in out
    assert "demo stopped cleanly" in run.stderr
