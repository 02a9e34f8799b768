"""bench/sse_fanout.py's server processes: the relay and the bare sse-starlette floor,
each run as `sse_fanout.py --serve ROLE ARGUMENT` and driven one JSON line at a time on
stdin (publish steadily, report status, quit), and `Server`, the benchmark's handle on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from _load import ROOT, percentile
from _relay_load import LoopLag, answer, commands, rss_kib

SCRIPT: Final = Path(__file__).resolve().with_name("sse_fanout.py")
HOTEL_DEVICES: Final = 200
HOTEL_ROOMS: Final = 50
REPLY_TIMEOUT_S: Final = 120.0
READY_S: Final = 60.0
SEP: Final = "\n"  # the relay's separator (live/stream.py)


def device_id(n: int) -> str:
    return f"dev-{n % HOTEL_DEVICES:04d}"  # tests.cloud.support.Api.seed_devices' ids


class FloorFanout:
    """The floor: a bare sse-starlette app; each client's queue gets every event."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[tuple[str, str]]] = set()
        self.count = 0

    def app(self) -> Any:
        from sse_starlette import EventSourceResponse, ServerSentEvent
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.routing import Route

        async def events(request: Request) -> EventSourceResponse:
            queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
            self.queues.add(queue)

            async def stream() -> AsyncIterator[ServerSentEvent]:
                try:
                    yield ServerSentEvent(comment="open", sep=SEP)
                    while True:
                        event_id, payload = await queue.get()
                        yield ServerSentEvent(data=payload, event="state", id=event_id, sep=SEP)
                finally:
                    self.queues.discard(queue)

            return EventSourceResponse(stream(), sep=SEP)

        return Starlette(routes=[Route("/v1/hotels/{hotel_id}/events", events)])

    async def publish(self, hotel_id: str, datas: list[dict[str, Any]]) -> None:
        import orjson

        at = time.time_ns() // 1_000_000
        when = datetime.fromtimestamp(at / 1000, UTC).isoformat(timespec="milliseconds")
        for data in datas:
            room = f"r{int(str(data['device_id'])[4:]) % HOTEL_ROOMS:03d}"
            envelope = {
                "kind": "state",
                "hotel_id": hotel_id,
                "room_id": room,
                "at": when.replace("+00:00", "Z"),
                "data": data,
            }
            item = (f"{at}-{self.count}", orjson.dumps(envelope).decode())
            self.count += 1
            for queue in self.queues:
                queue.put_nowait(item)

    @property
    def subscribers(self) -> int:
        return len(self.queues)


class RelaySide:
    """The relay's app; events go in through `relay.live.publish`, as from the bridge."""

    def __init__(self, app: Any) -> None:
        self.app_ = app

    @property
    def relay(self) -> Any:
        return self.app_.state.relay  # set by the app's lifespan once it has started

    async def publish(self, hotel_id: str, datas: list[dict[str, Any]]) -> None:
        from bellhop_cloud.live import LiveEvent

        await self.relay.live.publish(hotel_id, [LiveEvent("state", data) for data in datas])

    @property
    def subscribers(self) -> int:
        return int(self.relay.live.subscribers)


async def publish_steadily(
    publish: Callable[[str, list[dict[str, Any]]], Awaitable[None]],
    hotel_id: str,
    events: int,
    rate: float,
    batch: int,
) -> dict[str, Any]:
    """`events` events, `batch` per call, at `rate` events/s on a fixed schedule.

    A call that returns late delays the next ones (as a bridge that awaits its
    publish would): how late each call began is reported, and the clients also
    measure from each event's due time.
    """
    interval_ns = round(batch / rate * 1e9)
    start_ns = time.monotonic_ns() + 50_000_000
    late: list[float] = []
    took: list[float] = []  # each call's own time
    first_ns = last_ns = 0
    for call, seq in enumerate(range(0, events, batch)):
        due_ns = start_ns + call * interval_ns
        delay = (due_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        datas: list[dict[str, Any]] = []
        for n in range(seq, min(seq + batch, events)):
            values = {"temperature": 20.0 + (n % 50) / 10, "setpoint": 21.5}
            datas.append({"device_id": device_id(n), "values": values, "seq": n})
        sent_ns = time.monotonic_ns()
        late.append((sent_ns - due_ns) / 1e9)
        for data in datas:
            data["sent_ns"] = sent_ns  # the last key: the clients read it up to the "}"
        first_ns = first_ns or sent_ns
        last_ns = sent_ns
        await publish(hotel_id, datas)
        took.append((time.monotonic_ns() - sent_ns) / 1e9)
    return {
        "published": events,
        "start_ns": start_ns,
        "interval_ns": interval_ns,
        "first_ns": first_ns,
        "last_ns": last_ns,
        "late_ms_max": round(max(late, default=0.0) * 1000, 1),
        "late_ms_p99": round(percentile(late, 99) * 1000, 1),
        "call_ms_p50": round(percentile(took, 50) * 1000, 2),
        "call_ms_max": round(max(took, default=0.0) * 1000, 1),
    }


async def serve_role(role: str, argument: str, profile_dir: str | None) -> None:
    import uvicorn

    side: FloorFanout | RelaySide
    if role == "relay":
        from bellhop_cloud.config import load_config
        from bellhop_cloud.server import uvicorn_config

        config = uvicorn_config(load_config(Path(argument)), log_level="warning")
        side = RelaySide(config.app)
    else:
        side = FloorFanout()
        # The relay's uvicorn settings (server.uvicorn_config), around the bare app.
        config = uvicorn.Config(
            side.app(),
            host="127.0.0.1",
            port=int(argument),
            lifespan="off",
            access_log=False,
            log_level="warning",
            server_header=False,
            proxy_headers=False,
        )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + READY_S
    while not server.started:
        if serving.done() or time.monotonic() > deadline:
            await serving
            raise SystemExit(f"the {role} did not start")
        await asyncio.sleep(0.02)
    lag = LoopLag(every_s=0.02)

    async def handle(command: dict[str, Any]) -> bool:
        op = command["op"]
        if op == "publish":
            profile = cProfile.Profile() if profile_dir else None
            lag.take()
            if profile is not None:
                profile.enable()
            try:
                reply = await publish_steadily(
                    side.publish,
                    command["hotel_id"],
                    command["events"],
                    command["rate"],
                    command["batch"],
                )
            finally:
                if profile is not None and profile_dir is not None:
                    profile.disable()
                    profile.dump_stats(Path(profile_dir) / f"{role}-{command['round']}.prof")
            answer({**reply, "loop_lag_ms_max": round(lag.take() * 1000, 1)})
        elif op == "status":
            answer({"subscribers": side.subscribers, "lag_ms": round(lag.take() * 1000, 1)})
        elif op == "quit":
            server.should_exit = True
            await asyncio.wait_for(serving, 30)
            answer({"quit": True})
            return False
        return True

    answer({"listening": True, "pid": os.getpid(), "port": config.port})
    try:
        await commands(handle)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 30)


# --- the benchmark's side: the server processes -------------------------------------------


class Server:
    """A server process of this file, spoken to one JSON line at a time."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, port: int) -> None:
        self.name, self.process, self.port = name, process, port
        self.pid = process.pid
        self.idle_kib = 0

    @classmethod
    async def start(
        cls, name: str, argument: str, port: int, log: Path, profile: str | None
    ) -> Server:
        args = [str(SCRIPT), "--serve", name, argument]
        if profile:
            args += ["--profile", profile]
        with log.open("ab") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
                cwd=ROOT,
            )
        server = cls(name, process, port)
        try:
            ready = await server.reply(READY_S, log)
        except BaseException:
            await server.stop()
            raise
        if ready.get("port") != port:
            raise RuntimeError(f"the {name} listens on {ready.get('port')}, not {port}")
        await asyncio.sleep(1.0)  # whatever start-up still does (migrations, first sweeps)
        server.idle_kib = rss_kib(server.pid)
        return server

    async def ask(self, timeout: float = REPLY_TIMEOUT_S, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()
        return await self.reply(timeout)

    async def reply(self, timeout: float, log: Path | None = None) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-2000:] if log else ""
            raise RuntimeError(f"the {self.name} exited ({self.process.returncode}){tail}")
        body: dict[str, Any] = json.loads(line)
        return body

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.ask(timeout=40, op="quit")
                await asyncio.wait_for(self.process.wait(), 10)
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
