"""The README's main command, for real: the relay, two hotels, the story, a clean stop.

`bellhop demo` runs as a user runs it; the test reads what it narrates line by
line until the story is told, then presses Ctrl-C (SIGINT) and checks that
every beat happened in order, that the demo exited 0 and that the relay's
processes are gone.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Final

import pytest

from tests.support.relay_process import bytecode_cache

HOTEL: Final = r"htl_[0-9a-f]+"
STORY_TOLD: Final = "story told:"

# Every beat, in the order told (the two hotels' catch-ups run side by side: Porto's
# own order is checked apart). Each pattern matches one line after the one before.
SPINE: Final = (
    r"relay: `bellhop cloud run --config \S+/relay\.toml`, a process of its own: SQLite",
    r"relay: serving after [\d.]+ s \(pid \d+\): REST on http://127\.0\.0\.1:\d+,"
    r" bridges on ws://127\.0\.0\.1:\d+/v1/bridge",
    rf"cloud \(REST\): owner@example\.com created organisation org_\w+ with Seaside Lisbon"
    rf" \({HOTEL}\), Seaside Porto \({HOTEL}\)",
    r"remote manager login: http://127\.0\.0\.1:\d+  e-mail manager@example\.com  password \S+",
    rf"\[Lisbon\] one-time token from POST /v1/hotels/{HOTEL}/enrolment-tokens",
    r"\[Lisbon\] broker: (Mosquitto with per-device credentials and ACL|embedded amqtt)",
    r"\[Lisbon\] enrolled as gateway gw_\w+ \(as `bellhop edge enrol` does",
    r"\[Lisbon\] gateway: 2 rooms, 11 devices, SQLite at \S+edge\.db, LAN API on",
    r"\[Porto\] one-time token from POST",
    r"\[Porto\] enrolled as gateway gw_\w+",
    r"\[Porto\] gateway: 2 rooms, 11 devices",
    r"\[Lisbon\] \d+/11 simulated devices connected; LAN status: \d+ online, bridge open;"
    r" the relay lists 11 devices, /sync: connected true",
    r"\[Porto\] \d+/11 simulated devices connected; .* /sync: connected true",
    # (1) a remote command, and the same id on the LAN
    rf"\(1\) remote command, by the manager: POST /v1/hotels/{HOTEL}/devices/r101-thermostat"
    r'/commands \{"name": "set_setpoint", "params": \{"setpoint": 22\.5\}, "mode": "wait"',
    r'\[Porto\] relay answered 200 in \d+ ms: succeeded, result \{"setpoint": 22\.5\}',
    r"\[Porto\] the same command id on the LAN \(SendCommand\): COMMAND_STATUS_SUCCEEDED,"
    r" the same result, completed at the same moment: run once",
    # (2) an alert on site, acknowledged remotely, seen so on the LAN
    r"\(2\) alert on site: a gas leak in Lisbon room 101 \(r101-gas_sensor",
    rf"\[Lisbon\] GET /v1/hotels/{HOTEL}/alerts: alert [0-9a-f]+ \(critical, raised at",
    r"\[Lisbon\] POST \S+/alerts/[0-9a-f]+/acknowledge by the manager: acknowledged",
    r"\[Lisbon\] LAN ListAlerts: [0-9a-f]+ ALERT_STATE_ACKNOWLEDGED by"
    r" cloud:manager@example\.com at \S+Z, note 'gas company called; room 101 evacuated':"
    r" the same who and when as the relay",
    # (3) the relay stopped and started again; the catch-up
    r"\(3\) outage: the relay stops \(SIGTERM to `bellhop cloud run`, pid \d+\)",
    r"relay stopped: exit status 0 after [\d.]+ s",
    r"\[Lisbon\] relay away: LAN status says bridge waiting to reconnect",
    r"\[Porto\] relay away: LAN status says bridge waiting to reconnect",
    r"\[Lisbon\] backlog: the edge holds \d+ events past the lanes /sync showed before the stop"
    r" \(bulk \d+, priority \d+\)",
    r"\[Porto\] backlog: the edge holds \d+ events past the lanes /sync showed",
    r"relay started again: the same command on the same database \(pid \d+\)",
    r"\[Lisbon\] GET /sync: connected again [\d.]+ s after the relay, backlog \d+ -> 0 after",
    r"\[Lisbon\] temperature points of its 4 sensors recorded during the outage",
    r"\[Porto\] temperature points of its 4 sensors recorded during the outage",
    STORY_TOLD,
    # Ctrl-C
    r"stopping: each gateway drains its writer, then its devices say goodbye; then the relay",
    r"relay stopped: exit status 0$",
)
PORTO: Final = (
    r"\[Porto\] backlog: the edge holds \d+ events past the lanes",
    r"relay started again",
    r"\[Porto\] GET /sync: connected again [\d.]+ s after the relay, backlog \d+ -> 0 after",
    r"\[Porto\] temperature points",
)
POINTS: Final = re.compile(r"(\d+) on the edge \(LAN QueryTelemetry\), (\d+) in the relay")


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)  # the demo starts the relay twice


def in_order(lines: list[str], patterns: tuple[str, ...]) -> None:
    """Each pattern matches a line after the line the one before matched."""
    at = 0
    for pattern in patterns:
        compiled = re.compile(pattern)
        for index in range(at, len(lines)):
            if compiled.search(lines[index]):
                at = index + 1
                break
        else:
            pytest.fail(f"not told after line {at}: {pattern}\n{''.join(lines)}")


@pytest.mark.timeout(120)
async def test_demo_tells_the_whole_story_and_stops_cleanly(tmp_path: Path) -> None:
    errors = tmp_path / "demo.err"
    with errors.open("wb") as err:
        demo = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bellhop_cli.main", "demo", "--rooms", "2", "--interval", "0.5"),
            *("--duration", "100", "--workdir", str(tmp_path / "demo")),
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    stdout = demo.stdout
    assert stdout is not None
    told: list[str] = []

    async def read_until(end: str | None, timeout: float) -> None:
        """Lines into `told` until one holds `end` (None: until the demo closes its output)."""
        try:
            async with asyncio.timeout(timeout):
                while end is None or not any(end in line for line in told):
                    line = await stdout.readline()
                    if not line:
                        assert end is None, "the demo ended early"
                        return
                    told.append(line.decode())
        except (TimeoutError, AssertionError) as exc:
            what = f"not within {timeout} s" if isinstance(exc, TimeoutError) else str(exc)
            pytest.fail(f"{what}:\n{''.join(told)}\n{errors.read_text()[-3000:]}")

    try:
        await read_until(STORY_TOLD, 90)
        demo.send_signal(signal.SIGINT)  # Ctrl-C, as the README says
        await read_until(None, 40)
        async with asyncio.timeout(10):
            returncode = await demo.wait()
    finally:
        if demo.returncode is None:
            demo.kill()
            await demo.wait()
    err_text = errors.read_text()
    assert returncode == 0, "".join(told) + err_text[-3000:]
    assert "demo stopped cleanly" in err_text
    assert "FAILED" not in "".join(told)
    in_order(told, SPINE)
    in_order(told, PORTO)
    # The alert's id, the same in the relay, in the acknowledgement and on the LAN.
    alerts = {m for line in told for m in re.findall(r"alert ([0-9a-f]{16,}) \(critical", line)}
    assert len(alerts) == 1, alerts
    (alert,) = alerts
    assert sum(alert in line for line in told) >= 3
    # The edge held events for the relay while it was away, and every reading arrived.
    backlogs = [int(n) for line in told for n in re.findall(r"backlog (\d+) -> 0 after", line)]
    assert len(backlogs) == 2, backlogs
    assert min(backlogs) > 0, backlogs
    waiting = [
        int(n) for line in told for n in re.findall(r"(\d+) events not yet acknowledged", line)
    ]
    assert max(waiting) > 0, waiting
    points = [tuple(map(int, m.groups())) for line in told if (m := POINTS.search(line))]
    assert len(points) == 2, points
    assert all(edge == relay > 0 for edge, relay in points), points
    # Both relay processes (before and after the outage) are gone.
    for pid in {int(p) for line in told for p in re.findall(r"\(pid (\d+)\)", line)}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
