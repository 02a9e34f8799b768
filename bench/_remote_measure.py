"""P3's measuring: the manager's and the staff's clients, one command on each path, and
the paths taking turns in blocks with the CPU time of every process (bench/remote_command.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import psutil
from _remote_sites import COMMAND_TIMEOUT_S, HTTP_TIMEOUT_S, Site, light_ids
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2
from google.protobuf import struct_pb2

if TYPE_CHECKING:
    from bellhop.lan.v1.lan_pb2_grpc import LanServiceAsyncStub

SETTLE_S: Final = 3.0  # at most, between turns


class Http:
    """A minimal keep-alive HTTP/1.1 client: the manager's app, costing next to nothing."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        """`headers`: sent with every request (the bearer)."""
        self.port = port
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self._reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.headers}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write((head + "\r\n").encode() + body)
        async with asyncio.timeout(HTTP_TIMEOUT_S):
            status_and_headers = await self._reader.readuntil(b"\r\n\r\n")
            status = int(status_and_headers[9:12])
            length = None
            for line in status_and_headers.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length is None:
                raise RuntimeError(f"an answer without Content-Length: {status_and_headers!r}")
            return status, await self._reader.readexactly(length)

    async def reconnect(self) -> None:
        """A new connection, between turns: the relay closes one idle for 5 s
        (uvicorn's keep-alive), and opening one is no part of a command."""
        await self.close()
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        await self.request("GET", "/healthz")  # the connection's first request, untimed

    async def close(self) -> None:
        self._reader = None
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@dataclass(frozen=True)
class CommandPath:
    """One way of sending a command: `one(i)` sends the i-th and checks its answer;
    `turn()` runs before each turn of the path, untimed."""

    one: Callable[[int], Awaitable[None]]
    turn: Callable[[], Awaitable[None]] | None = None


def remote_path(http: Http, site: Site, prefix: str) -> CommandPath:
    """One command through the relay's REST API, waited for (mode=wait)."""
    devices = light_ids()

    async def one(i: int) -> None:
        device_id = devices[i % len(devices)]
        body = {
            "name": "set_light",
            "params": {"on": bool((i // len(devices)) % 2)},
            "command_id": f"{prefix}-{i}",
            "mode": "wait",
            "timeout_s": COMMAND_TIMEOUT_S,
        }
        status, answer = await http.request(
            "POST",
            f"/v1/hotels/{site.hotel.hotel_id}/devices/{device_id}/commands",
            json.dumps(body).encode(),
        )
        if status != 200 or json.loads(answer)["state"] != "succeeded":
            raise RuntimeError(f"remote command {prefix}-{i} failed: {status} {answer[:300]!r}")

    return CommandPath(one, http.reconnect)


def lan_path(stub: LanServiceAsyncStub, site: Site, prefix: str) -> CommandPath:
    """One command on the hotel LAN (gRPC SendCommand to the gateway), as lan_command."""
    devices = light_ids()
    auth = (("authorization", f"Bearer {site.token}"),)
    params = struct_pb2.Struct()

    async def one(i: int) -> None:
        params.update({"on": bool((i // len(devices)) % 2)})
        reply = await stub.SendCommand(
            lan_pb2.SendCommandRequest(
                device_id=devices[i % len(devices)],
                name="set_light",
                params=params,
                command_id=f"{prefix}-{i}",
            ),
            metadata=auth,
            timeout=COMMAND_TIMEOUT_S,
        )
        if reply.result.status != common_pb2.COMMAND_STATUS_SUCCEEDED:
            raise RuntimeError(f"LAN command {prefix}-{i} failed: {reply.result}")

    return CommandPath(one)


def health_path(http: Http) -> CommandPath:
    """The relay's bare REST round trip: GET /healthz (no auth, no database)."""

    async def one(_i: int) -> None:
        status, _ = await http.request("GET", "/healthz")
        if status != 200:
            raise RuntimeError(f"/healthz answered {status}")

    return CommandPath(one, http.reconnect)


@dataclass
class Measured:
    """Per path: each command's time (ms), and when it was sent and answered (ns, on
    CLOCK_MONOTONIC: the relays' and gateways' trace marks line up with them)."""

    samples: dict[str, list[float]]
    windows: dict[str, list[tuple[int, int]]]
    # Per path, the CPU seconds each process spent during its turns.
    cpu: dict[str, dict[str, float]]
    seconds: float = 0.0
    idle_cpu: dict[str, float] = field(default_factory=dict)  # per process, % of a core


class CpuMeter:
    """CPU time (user and system, all threads) of the processes on the paths, by part."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self.parts = parts

    async def settle(self, *, window_s: float = 0.05, busy: float = 0.05) -> None:
        """Wait (at most SETTLE_S) until no process uses more than `busy` of a core over
        `window_s`: what a turn left behind (a relay applying the outbox batches of its
        last commands) is done before the next turn begins, and counted in its turn."""
        deadline = time.monotonic() + SETTLE_S
        before = self.sample()
        while time.monotonic() < deadline:
            await asyncio.sleep(window_s)
            now = self.sample()
            if all(now[p] - before[p] <= busy * window_s for p in now if p != "client"):
                return
            before = now

    def sample(self) -> dict[str, float]:
        out = {}
        for part, pids in self.parts.items():
            total = 0.0
            for pid in pids:
                with contextlib.suppress(psutil.Error):
                    times = psutil.Process(pid).cpu_times()
                    total += times.user + times.system
            out[part] = total
        return out


@dataclass(frozen=True)
class Sizes:
    commands: int  # measured, per path
    warm_up: int  # per path, before measuring
    block: int  # commands per path per turn


async def measure(paths: dict[str, CommandPath], sizes: Sizes, meter: CpuMeter) -> Measured:
    """`warm_up` commands on each path, then `commands` each in turns of `block`, the
    order of the paths rotating every turn."""
    n, block = sizes.commands, sizes.block
    names = list(paths)
    for name in names:
        for i in range(sizes.warm_up):
            await paths[name].one(-1 - i)
    await meter.settle()
    out = Measured(
        {name: [] for name in names},
        {name: [] for name in names},
        {name: dict.fromkeys(meter.parts, 0.0) for name in names},
    )
    clock = time.monotonic_ns
    began = clock()
    done = 0
    turn = 0
    while done < n:
        count = min(block, n - done)
        order = names[turn % len(names) :] + names[: turn % len(names)]
        for name in order:
            path = paths[name]
            if path.turn is not None:
                await path.turn()
            one, samples, windows = path.one, out.samples[name], out.windows[name]
            before = meter.sample()
            for i in range(done, done + count):
                sent = clock()
                await one(i)
                answered = clock()
                samples.append((answered - sent) / 1e6)
                windows.append((sent, answered))
            await meter.settle()  # the turn's trailing work (outbox batches) is its own
            after = meter.sample()
            for part, spent in out.cpu[name].items():
                out.cpu[name][part] = spent + after[part] - before[part]
        done += count
        turn += 1
    out.seconds = (clock() - began) / 1e9
    return out
