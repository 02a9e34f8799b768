"""`bellhop demo`: the whole system on one machine, narrated.

Starts the cloud relay (`bellhop cloud run` on its embedded defaults: SQLite
in the demo's directory, the in-process bus), creates an organisation, its
hotels and a remote manager through the REST API, then two hotels (or
`--hotels`), each with its own broker, gateway and simulated rooms, each
gateway enrolled with a one-time token as `bellhop edge enrol` does. Then it
tells the story of `story.py` with real calls: a remote command, an alert
acknowledged remotely, an outage of the relay and the catch-up after it.
Runs until Ctrl-C, SIGTERM or `--duration`, and stops every process cleanly.

    relay.py      the relay's process and its REST API
    hotel.py      one hotel: broker, gateway, simulated rooms, its LAN API
    story.py      the narration
    narration.py  how it speaks
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bellhop_cli.demo.hotel import DemoHotel
    from bellhop_cli.demo.relay import Cloud, DemoRelay

__all__ = ["register"]

log = logging.getLogger("bellhop.demo")


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser(
        "demo", help="run the whole system on this machine: a relay and demo hotels, narrated"
    )
    demo.add_argument("--hotels", type=int, default=2, help="hotels, each with its own gateway")
    demo.add_argument(
        "--rooms", type=int, default=6, help="simulated rooms per hotel (5-6 devices each)"
    )
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between device reports")
    demo.add_argument(
        "--duration", type=float, default=None, help="stop this many seconds after start-up"
    )
    demo.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the relay's and the gateways' files here (a new or empty directory)",
    )
    demo.add_argument(
        "--relay-port", type=int, default=0, help="the relay's REST port (default: a free one)"
    )
    demo.add_argument(
        "--bridge-port", type=int, default=0, help="the relay's bridge port (default: a free one)"
    )
    demo.set_defaults(handler=_main)


def _problem(args: argparse.Namespace) -> str | None:
    workdir: Path | None = args.workdir
    checks = (
        (1 <= args.hotels <= 20, "--hotels: between 1 and 20"),
        (1 <= args.rooms <= 200, "--rooms: between 1 and 200"),
        (0.1 <= args.interval <= 60, "--interval: between 0.1 and 60 seconds"),
        (args.duration is None or args.duration > 0, "--duration: more than 0 seconds"),
        (0 <= args.relay_port <= 65535, "--relay-port: a TCP port, or 0 for a free one"),
        (0 <= args.bridge_port <= 65535, "--bridge-port: a TCP port, or 0 for a free one"),
        (
            workdir is None
            or not workdir.exists()
            or (workdir.is_dir() and not any(workdir.iterdir())),
            f"--workdir {workdir}: not an empty directory (the demo starts afresh)",
        ),
    )
    return next((problem for ok, problem in checks if not ok), None)


def _main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)-16s %(message)s",
        datefmt="%H:%M:%S",
    )
    # The demo tells alerts and the bridge's comings and goings itself, from the APIs.
    for chatty in ("bellhop_edge.gateway", "bellhop_edge.bridge"):
        logging.getLogger(chatty).setLevel(logging.ERROR)
    if problem := _problem(args):
        print(f"bellhop demo: {problem}", file=sys.stderr)
        return 2
    code = asyncio.run(_run(args))
    print("demo stopped cleanly" if code == 0 else "demo stopped after a failure", file=sys.stderr)
    return code


async def _run(args: argparse.Namespace) -> int:
    """The demo in a task; SIGINT and SIGTERM stop it, start-up included."""
    loop = asyncio.get_running_loop()
    stop, up = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    demo = asyncio.create_task(_demo(args, stop, up), name="demo")
    stopper = asyncio.create_task(stop.wait(), name="demo-stop")
    try:
        await asyncio.wait({demo, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not demo.done() and not up.is_set():
            demo.cancel()  # stopped while starting: unwind what was started
        await asyncio.gather(demo, return_exceptions=True)
    finally:
        stopper.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if demo.cancelled():
        return 0
    if (error := demo.exception()) is not None:
        log.error("the demo failed", exc_info=error)
        return 1
    return demo.result()


async def _demo(args: argparse.Namespace, stop: asyncio.Event, up: asyncio.Event) -> int:
    """Start everything, tell the story until stopped, stop everything; the exit status."""
    from bellhop_cli.demo.narration import DemoError, say
    from bellhop_cli.demo.relay import DemoRelay

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bellhop-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    relay = DemoRelay(workdir / "relay", port=args.relay_port, bridge_port=args.bridge_port)
    running = Running(relay)
    told = 1
    try:
        await _start(args, workdir, running)
        up.set()
        told = await _tell(args, running, stop)
    except DemoError as exc:
        say(f"FAILED: {exc}")
    finally:
        try:
            stopped = await running.stop()
        except Exception:
            log.exception("the demo could not stop everything")
            stopped = 1
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return max(told, stopped)


class Running:
    """What the demo started, to stop in order: the story, each hotel, the relay."""

    def __init__(self, relay: DemoRelay) -> None:
        self.relay = relay
        self.hotels: list[DemoHotel] = []
        self.cloud: Cloud | None = None
        self.story: asyncio.Task[None] | None = None

    async def stop(self) -> int:
        from bellhop_cli.demo.narration import say

        if self.story is not None and not self.story.done():
            self.story.cancel()
            await asyncio.gather(self.story, return_exceptions=True)
        if self.hotels:
            say(
                "stopping: each gateway drains its writer, then its devices say goodbye;"
                " then the relay"
            )
        while self.hotels:
            await self.hotels.pop().close()
        if self.cloud is not None:
            await self.cloud.aclose()
            self.cloud = None
        if self.relay.proc is None:
            return 0
        code = await self.relay.stop()
        if not self.relay.served:  # killed by the signal before its handlers were set
            say(f"relay stopped during its start-up: exit status {code}")
            return 0
        say(f"relay stopped: exit status {code}")
        return 0 if code == 0 else 1


async def _start(args: argparse.Namespace, workdir: Path, running: Running) -> None:
    """The relay, the organisation and its people, then each hotel, enrolled."""
    from bellhop_cli.demo.hotel import DemoHotel
    from bellhop_cli.demo.narration import say
    from bellhop_cli.demo.relay import MANAGER, OWNER, set_up_cloud

    relay = running.relay
    say(
        f"relay: `bellhop cloud run --config {relay.config}`, a process of its own:"
        f" SQLite {relay.database}, in-process bus, log {relay.log}"
    )
    took = await relay.start()
    pid = relay.proc.pid if relay.proc else "?"
    say(
        f"relay: serving after {took:.1f} s (pid {pid}): REST on {relay.url},"
        f" bridges on {relay.bridge_url}"
    )
    running.cloud = cloud = await set_up_cloud(relay.url, args.hotels)
    names = ", ".join(f"{h.name} ({h.hotel_id})" for h in cloud.hotels)
    say(f"cloud (REST): {OWNER} created organisation {cloud.org_id} with {names}")
    say(
        f"remote manager login: {relay.url}  e-mail {MANAGER}  password"
        f" {cloud.manager_password}  (role manager on every hotel; POST /v1/auth/login)"
    )
    for listed in cloud.hotels:
        hotel = DemoHotel(
            label=listed.label,
            hotel_id=listed.hotel_id,
            workdir=workdir / f"hotel-{listed.label.lower()}",
            rooms=args.rooms,
            interval=args.interval,
        )
        running.hotels.append(hotel)
        token = await cloud.enrolment_token(listed.hotel_id)
        hotel.say(f"one-time token from POST /v1/hotels/{listed.hotel_id}/enrolment-tokens")
        await hotel.start(relay.url, token)


async def _tell(args: argparse.Namespace, running: Running, stop: asyncio.Event) -> int:
    """The story until `--duration` or a stop; 0, or the story's failure raised."""
    from bellhop_cli.demo.story import tell

    assert running.cloud is not None
    running.story = story = asyncio.create_task(
        tell(running.relay, running.cloud, running.hotels, args.interval), name="demo-story"
    )
    stopper = asyncio.create_task(stop.wait(), name="demo-stopper")
    try:
        await asyncio.wait(
            {story, stopper}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        stopper.cancel()
    if story.done():
        story.result()  # the story ends only by failing: raise it
    return 0
