"""The README's main command: a whole demo hotel, narrated, stopping cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

# The story's last two beats: the quiet door's alert, then staff acknowledging it.
STORY_END = ("ALERT raised: device_offline on r101-door_sensor", "front desk acknowledged alert")


async def test_demo_tells_the_whole_story_and_stops_cleanly(tmp_path: Path) -> None:
    errors = tmp_path / "demo.err"
    with errors.open("wb") as err:
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bellhop_cli.main", "demo", "--rooms", "2", "--interval", "0.5"),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    assert demo.stdout is not None
    told: list[str] = []
    try:
        async with asyncio.timeout(40):
            while not all(any(end in line for line in told) for end in STORY_END):
                line = await demo.stdout.readline()
                assert line, f"the demo ended early: {errors.read_text()[-2000:]}"
                told.append(line.decode())
        demo.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        async with asyncio.timeout(30):
            told.append((await demo.stdout.read()).decode())
            returncode = await demo.wait()
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    out, err_text = "".join(told), errors.read_text()
    assert returncode == 0, err_text[-2000:]
    assert "per-device credentials and ACL" in out
    assert re.search(r"\d+/11 simulated devices connected", out)
    assert "set_setpoint(22.5)" in out
    assert "COMMAND_STATUS_SUCCEEDED" in out
    assert "same result, not executed twice" in out
    assert all(end in out for end in STORY_END)
    assert "stopping: the gateway drains its writer" in out
    assert "demo stopped cleanly" in err_text
