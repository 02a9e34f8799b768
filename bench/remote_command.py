"""P3: remote command round trip: REST -> relay -> bridge -> gateway -> MQTT -> device -> back.

A manager's `POST /v1/hotels/{hotel}/devices/{device}/commands` with `mode: "wait"`,
answered with the device's result, against the same gateway and devices that staff
reach on the LAN (gRPC `SendCommand`, as bench/lan_command.py), in the same run:

- one node: one relay (`bellhop cloud run`, its embedded defaults: SQLite, the
  in-process bus) holding the gateway's bridge and taking the REST call;
- two nodes: two relays on one PostgreSQL database (bench/_pg.py's throwaway one) and
  Redis (`bus_backend = "redis"`; login throttling stays in memory, it is not on the
  path); the gateway's bridge is held by node A, the REST call goes to node B, so the
  request crosses to A as a nudge and the result comes back to B on the results channel.

Every relay, each hotel's gateway (`bellhop edge run`, enrolled through the relay that
holds its bridge), each hotel's Mosquitto and the simulated lights (`bellhop_devices.sim`,
one MQTT connection each) run as their own processes; this process is the manager's
app (a minimal keep-alive HTTP/1.1 client, as bench/cloud_api.py's) and the staff app
(grpc.aio). One command at a time, round-robin over a hotel's four lights (`set_light`,
each command changing the light, so every command also sends its result and a state
report up the bridge's outbox, which the relay applies too). After a warm-up the paths
take turns in blocks of 50, so that load from anything else on the
machine falls on all of them alike; between turns the processes are let finish what a
turn left (the relays applying its last outbox batches). Also measured in the same
turns: the LAN path of the two-node hotel's gateway (`lan2_p50_ms`: the two gateways
alike) and the relay's bare REST round trip (`GET /healthz` on the one-node relay,
`rest_floor_p50_ms`); and the CPU time each process spent per command of each path
(`cpu_ms_per_command`).

    .venv/bin/python bench/remote_command.py [--quick] [--commands N] [--trace]
        [--profile DIR]

`--trace` runs the relays and gateways through this file with marks at each step of a
command and prints where the time goes, step by step, with each relay's trips to its
database (the marks cost time too: quote the figures of a run without it).
`--profile DIR` runs them through this file under cProfile and prints each one's busiest
functions (the statistics stay in DIR, one file per process).

Prints one JSON object as its last line: remote_p50_ms, remote_p99_ms, lan_p50_ms,
ratio (remote p50 / LAN p50), remote_2node_p50_ms, ratio_2node (two-node p50 /
one-node p50), the other paths' figures, and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import functools
import json
import math
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import asyncpg  # type: ignore[import-untyped]
import grpc
import httpx
import psutil
from _load import ROOT, broker, percentile, report
from _pg import PG_ADMIN, create_database, drop_database
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_edge.auth import LocalTokens, Role
from bellhop_edge.bridge.identity import enrol
from bellhop_edge.localbroker import Credentials, MosquittoBroker
from google.protobuf import struct_pb2

from tests.support.mosquitto import free_port, wait_for_port

if TYPE_CHECKING:
    from bellhop.lan.v1.lan_pb2_grpc import LanServiceAsyncStub

TARGET_RATIO: Final = 2.5  # remote p50 <= 2.5 x LAN p50
TARGET_RATIO_2NODE: Final = 1.5  # two-node p50 <= 1.5 x one-node p50
REDIS_URL: Final = os.environ.get("BELLHOP_BENCH_REDIS", "redis://127.0.0.1:6379/0")

LIGHTS: Final = 4  # per hotel, one room each
BLOCK: Final = 50  # commands per path per turn
WARM_UP: Final = 200  # commands per path before measuring (--quick: 50)
COMMAND_TIMEOUT_S: Final = 5.0
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
HTTP_TIMEOUT_S: Final = 10.0
SETTLE_S: Final = 3.0  # at most, between turns
IDLE_S: Final = 2.0  # the processes' CPU time with no command, before the warm-up


# --- processes ---------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the processes this benchmark starts: their sources compiled
    once into a cache of our own instead of at every start, without writing into the
    source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_CLOUD_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "bellhop-bench-pycache")
    )
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def stop(*owners: Relay | Site) -> None:
    """SIGTERM to all at once (each stops cleanly), then wait for each."""
    processes = [o.process for o in owners if o.process is not None]
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


@dataclass
class Relay:
    """One relay node (`bellhop cloud run`): its REST API and bridge on ports of its own."""

    name: str
    workdir: Path
    settings: dict[str, str]
    trace: Path | None = None  # where --trace's marks go
    profile: Path | None = None  # where --profile's statistics go
    http_port: int = field(default_factory=free_port)
    bridge_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        values = {
            "port": str(self.http_port),
            "bridge_port": str(self.bridge_port),
            # Shared by the nodes of one database: a token signed by one is good on the other.
            "signing_key_path": str(self.workdir / "signing-key.pem"),
            # Enrolment needs password hashes; the defaults cost 64 MiB each.
            "password_time_cost": "1",
            "password_memory_kib": "8",
            "password_parallelism": "1",
            "access_token_ttl_s": "900",
            **self.settings,
        }
        env = child_env(**{f"BELLHOP_CLOUD_{k.upper()}": v for k, v in values.items()})
        command = [str(ROOT / ".venv/bin/bellhop"), "cloud", "run"]
        if self.trace is not None or self.profile is not None:
            command = [sys.executable, __file__, "--serve", "relay", *command[1:]]
        if self.trace is not None:
            env[TRACE_ENV] = str(self.trace / f"{self.name}.marks")
        if self.profile is not None:
            env[PROFILE_ENV] = str(self.profile / f"{self.name}.prof")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )

    def check(self) -> None:
        """Raise if the relay died (with the end of its log, which says why)."""
        if self.process is not None and self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{tail}")

    async def ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.base_url, timeout=HTTP_TIMEOUT_S) as http:
            while True:
                self.check()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/readyz")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} did not become ready")
                await asyncio.sleep(0.05)


def _body(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text}")
    return response.json()


@dataclass(frozen=True)
class Tenant:
    """An owner, an organisation and a hotel in the relay, and the owner's bearer."""

    hotel_id: str
    headers: dict[str, str]


async def tenant(relay: Relay) -> Tenant:
    password = secrets.token_urlsafe(16)
    email = f"owner-{secrets.token_hex(4)}@example.com"
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=HTTP_TIMEOUT_S) as http:
        account = {"email": email, "password": password, "display_name": "Owner"}
        _body(await http.post("/v1/auth/register", json=account), 201)
        login = {"email": email, "password": password}
        tokens = _body(await http.post("/v1/auth/login", json=login), 200)
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        org = _body(await http.post("/v1/orgs", json={"name": "Bench"}, headers=headers), 201)
        hotel = _body(
            await http.post(
                f"/v1/orgs/{org['id']}/hotels",
                json={"name": "Bench Hotel", "timezone": "Europe/Lisbon"},
                headers=headers,
            ),
            201,
        )
    return Tenant(str(hotel["id"]), headers)


async def enrol_gateway(relay: Relay, owner: Tenant, data_dir: Path) -> None:
    """The gateway's own enrolment (what `bellhop edge enrol` runs) through `relay`, whose
    bridge it will then open."""
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=HTTP_TIMEOUT_S) as http:
        token = _body(
            await http.post(
                f"/v1/hotels/{owner.hotel_id}/enrolment-tokens", json={}, headers=owner.headers
            ),
            201,
        )
    await asyncio.to_thread(
        enrol, data_dir, relay_url=relay.base_url, token=str(token["token"]), name="bench-gw"
    )


def light_ids() -> list[str]:
    return [f"r{101 + n}-light" for n in range(LIGHTS)]


@dataclass
class Site:
    """A hotel's side: its gateway process with its LAN API, and its lights."""

    label: str
    hotel: Tenant
    workdir: Path
    mq: MosquittoBroker
    api_port: int = field(default_factory=free_port)
    devices: dict[str, Credentials] = field(default_factory=dict)
    token: str = ""
    trace: Path | None = None
    profile: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "edge"

    def configure(self) -> Path:
        gw = self.mq.add_gateway(self.hotel.hotel_id)
        self.devices = self.mq.add_devices(self.hotel.hotel_id, light_ids())
        self.mq.reload()
        lines = [
            f'hotel_id = "{self.hotel.hotel_id}"',
            f'data_dir = "{self.data_dir}"',
            'log_level = "WARNING"',
            "[mqtt]",
            f'host = "{self.mq.host}"',
            f"port = {self.mq.port}",
            f'username = "{gw.username}"',
            f'password = "{gw.password}"',
            "[api]",
            f'listen = "127.0.0.1:{self.api_port}"',
            "[bridge]",
            "reconnect_min_s = 0.05",
            "reconnect_max_s = 1.0",
        ]
        for n, device_id in enumerate(light_ids()):
            room = str(101 + n)
            lines += ["[[rooms]]", f'room_id = "{room}"', "floor = 1"]
            lines += ["[[devices]]", f'device_id = "{device_id}"', f'room_id = "{room}"']
            lines += ['kind = "light"']
        config = self.workdir / "edge.toml"
        config.write_text("\n".join(lines) + "\n")
        self.token = LocalTokens(self.data_dir / "staff-tokens.json").create("bench", Role.STAFF)
        return config

    def start(self, config: Path) -> None:
        command = [str(ROOT / ".venv/bin/bellhop"), "edge", "run", "--config", str(config)]
        env = child_env()
        if self.trace is not None or self.profile is not None:
            command = [sys.executable, __file__, "--serve", "gateway", *command[1:]]
        if self.trace is not None:
            env[TRACE_ENV] = str(self.trace / f"gateway-{self.label}.marks")
        if self.profile is not None:
            env[PROFILE_ENV] = str(self.profile / f"gateway-{self.label}.prof")
        with (self.workdir / "gateway.log").open("ab") as log:
            self.process = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def device_specs(self) -> list[DeviceSpec]:
        return [
            DeviceSpec(self.mq.host, self.mq.port, self.hotel.hotel_id, d, c.username, c.password)
            for d, c in self.devices.items()
        ]


@dataclass(frozen=True)
class DeviceSpec:
    host: str
    port: int
    hotel_id: str
    device_id: str
    username: str
    password: str


def run_devices(specs: list[DeviceSpec]) -> None:
    """Every light of both hotels, in one process of their own."""
    from bellhop_devices.messages import DeviceKind
    from bellhop_devices.sim import Broker, SimulatedDevice

    async def serve() -> None:
        async with contextlib.AsyncExitStack() as stack:
            for spec in specs:
                device = SimulatedDevice(
                    hotel_id=spec.hotel_id,
                    device_id=spec.device_id,
                    kind=DeviceKind.LIGHT,
                    broker=Broker(spec.host, spec.port),
                    room_id=spec.device_id[1:4],
                    username=spec.username,
                    password=spec.password,
                    interval_s=3600,
                )
                await stack.enter_async_context(device)
            await asyncio.Event().wait()

    try:
        import uvloop

        uvloop.run(serve())
    except ImportError:
        asyncio.run(serve())


# --- the two clients ---------------------------------------------------------------------


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


# --- tracing (--trace) -------------------------------------------------------------------
#
# With --trace, each relay and gateway runs through this file (`--serve relay|gateway`),
# which wraps the functions a remote command passes through, in the relay and on the
# edge, to write the time of each entry (`name>`) and exit (`name<`) to a file of its
# own. All processes read CLOCK_MONOTONIC (time.monotonic_ns), so their marks line up
# with the client's; commands go one at a time, so a mark between a command's send and
# its answer belongs to it (or is work running beside it: the outbox's batches, sweeps).

TRACE_ENV: Final = "BELLHOP_BENCH_TRACE"
PROFILE_ENV: Final = "BELLHOP_BENCH_PROFILE"


class Marks:
    """Marks of one process, written as `<ns> <label>` lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def mark(self, label: str) -> None:
        self.lines.append(f"{time.monotonic_ns()} {label}\n")
        if len(self.lines) >= 512:
            self.flush()

    def flush(self) -> None:
        with self.path.open("a") as out:
            out.writelines(self.lines)
        self.lines.clear()


def wrap(marks: Marks, owner: Any, attr: str, label: str) -> None:
    """Mark each call of `owner.attr` (a function or coroutine function) on entry and exit;
    nothing if the code under test has no such function (any more)."""
    import inspect

    original = getattr(owner, attr, None)
    if original is None:
        return
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def traced_async(*args: Any, **kwargs: Any) -> Any:
            marks.mark(label + ">")
            try:
                return await original(*args, **kwargs)
            finally:
                marks.mark(label + "<")

        setattr(owner, attr, traced_async)
    else:

        @functools.wraps(original)
        def traced_sync(*args: Any, **kwargs: Any) -> Any:
            marks.mark(label + ">")
            try:
                return original(*args, **kwargs)
            finally:
                marks.mark(label + "<")

        setattr(owner, attr, traced_sync)


def caller() -> str:
    """The relay's functions on the stack that asked for this trip to the database: the
    innermost two of bellhop_cloud (`send_commands/_who`, `_deliver/write`: a commit).
    None at all: a connection going back to the pool, which SQLAlchemy does in a task
    of its own (`asyncio.shield`), rolling back what the read left open."""
    names: list[str] = []
    frame = sys._getframe(2)
    while frame is not None and len(names) < 2:
        where = frame.f_code.co_filename
        if "bellhop_cloud" in where and not where.endswith(("cli.py", "server.py")):
            names.append(frame.f_code.co_name)
        frame = frame.f_back  # type: ignore[assignment]
    return "/".join(reversed(names)) or "(connection back to the pool)"


def trip(marks: Marks, owner: Any, attr: str) -> None:
    """Mark each trip to the database as `db.op:<the relay's function that asked>`."""
    original = getattr(owner, attr)

    async def traced(*args: Any, **kwargs: Any) -> Any:
        marks.mark(f"db.op:{caller()}")
        return await original(*args, **kwargs)

    setattr(owner, attr, traced)


def trace_relay(marks: Marks) -> None:
    from bellhop_cloud import audit, remote, server
    from bellhop_cloud.app import create_app
    from bellhop_cloud.bridge import sync
    from bellhop_cloud.bridge.downlink import Downlink
    from bellhop_cloud.bridge.endpoint import BridgeEndpoint
    from bellhop_cloud.bus import _Handlers

    def traced_app(config: Any, **kwargs: Any) -> Any:
        app = create_app(config, **kwargs)

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/commands"):
                await app(scope, receive, send)
                return
            marks.mark("http.in")

            async def sending(message: Any) -> None:
                if message["type"] == "http.response.start":
                    marks.mark("http.out")
                await send(message)

            await app(scope, receive, sending)

        return asgi

    server.create_app = traced_app  # type: ignore[attr-defined]
    from bellhop_cloud.auth.sessions import Sessions
    from bellhop_cloud.db import reads
    from bellhop_cloud.relay import Relay as CloudRelay

    wrap(marks, Sessions, "require_live", "auth.session")
    wrap(marks, CloudRelay, "hotel_access", "hotel_access")
    for reader in (reads.SqliteDeviceReader, reads.PostgresDeviceReader):
        wrap(marks, reader, "one", "device.one")
    wrap(marks, remote, "send_commands", "send_commands")
    wrap(marks, remote, "command_statuses", "statuses")
    wrap(marks, audit, "record", "audit")  # in the store's thread on SQLite, still marked
    # A command's transaction body (in the store's thread on SQLite, in a greenlet on
    # PostgreSQL): its end, before the commit.
    wrap(marks, remote, "_queue_commands", "queue_commands")
    wrap(marks, sync, "results", "store_result")
    for attr in ("queue", "nudge", "wait", "_answered", "_nudged", "_deliver", "received"):
        wrap(marks, Downlink, attr, f"downlink.{attr.lstrip('_')}")
    for attr in ("finished", "_wake", "_result_heard"):
        wrap(marks, Downlink, attr, f"downlink.{attr.lstrip('_')}")
    wrap(marks, BridgeEndpoint, "_send_down", "bridge.send_down")
    wrap(marks, BridgeEndpoint, "_apply", "bridge.apply_batch")
    deliver = _Handlers.deliver

    def delivered(self: Any, channel: str, message: str) -> None:
        marks.mark(f"bus.{channel}")
        deliver(self, channel, message)

    _Handlers.deliver = delivered  # type: ignore[method-assign]
    # Each trip to the database: a hop to aiosqlite's thread, or a round trip to PostgreSQL.
    import aiosqlite.core
    import asyncpg.connection  # type: ignore[import-untyped]
    import asyncpg.prepared_stmt  # type: ignore[import-untyped]
    import asyncpg.transaction  # type: ignore[import-untyped]

    trip(marks, aiosqlite.core.Connection, "_execute")
    trip(marks, asyncpg.prepared_stmt.PreparedStatement, "fetch")
    for attr in ("start", "commit", "rollback"):
        trip(marks, asyncpg.transaction.Transaction, attr)
    for attr in ("prepare", "execute", "executemany"):
        trip(marks, asyncpg.connection.Connection, attr)


def trace_gateway(marks: Marks) -> None:
    from bellhop_edge.bridge.client import BridgeClient
    from bellhop_edge.bridge.remote import RemoteControl
    from bellhop_edge.gateway import Gateway

    wrap(marks, RemoteControl, "command", "edge.remote_command")
    wrap(marks, Gateway, "send_command", "edge.send_command")
    wrap(marks, Gateway, "_publish", "edge.mqtt_publish")
    wrap(marks, BridgeClient, "_reply", "edge.reply")


def serve(role: str, argv: list[str]) -> int:
    """A relay or gateway as `bellhop ...` runs it, with the marks of --trace and the
    statistics of --profile (cProfile, of the process's main thread from its start)."""
    import atexit

    from bellhop_cli.main import main as cli

    if TRACE_ENV in os.environ:
        marks = Marks(Path(os.environ[TRACE_ENV]))
        atexit.register(marks.flush)
        (trace_relay if role == "relay" else trace_gateway)(marks)
    if PROFILE_ENV in os.environ:
        import cProfile

        profile = cProfile.Profile()
        atexit.register(profile.dump_stats, os.environ[PROFILE_ENV])
        atexit.register(profile.disable)  # atexit runs last registered first
        profile.enable()
    return cli(argv)


def profiled(directory: Path, top: int = 30) -> None:
    """Each process's busiest functions (own time), from --profile's statistics."""
    import pstats

    for path in sorted(directory.glob("*.prof")):
        print(f"\n  {path.stem}: the {top} functions with the most own time", file=sys.stderr)
        stats = pstats.Stats(str(path), stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(top)


def read_marks(path: Path, process: str) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        ns, _, label = line.partition(" ")
        out.append((int(ns), f"{process}:{label}"))
    return out


# The steps of a remote command, in order: (mark, what the time since the step before
# it was spent on). REST is the node taking the call, HOLD the one holding the bridge.
REMOTE_STEPS: Final = (
    ("REST:http.in", "the request to the relay's app (client, socket, HTTP parse)"),
    ("REST:auth.session>", "routing, the bearer's signature (cached)"),
    ("REST:auth.session<", "the session checked live in the database (a write's rule)"),
    ("REST:hotel_access<", "the body, hotel access (cached)"),
    ("REST:device.one<", "the device's room (the device reader)"),
    ("REST:send_commands>", "the permission checked"),
    ("REST:downlink.queue>", "write transaction opened; online?, who, earlier id (2 reads)"),
    ("REST:audit<", "insert the downlink row and the audit entry (the whole transaction)"),
    ("REST:queue_commands<", "the transaction's statements (earlier ids, online?, row, audit)"),
    ("REST:downlink.nudge>", "commit"),
    ("HOLD:downlink.deliver>", "the nudge to the holder's delivery task"),
    ("HOLD:bridge.send_down>", "read the queued rows, build the frames"),
    ("GW:edge.remote_command>", "frame on the bridge: sent, read and decoded by the gateway"),
    ("GW:edge.send_command>", "checked as a LAN request"),
    ("GW:edge.send_command<", "the gateway's command path: MQTT, device, ack, records"),
    ("GW:edge.reply>", "result converted for the bridge"),
    ("HOLD:downlink.received>", "result frame sent, read and decoded by the relay"),
    ("HOLD:store_result>", "checked (Plan), write transaction opened"),
    ("HOLD:store_result<", "result stored, downlink row done"),
    ("HOLD:downlink.finished>", "commit"),
    ("REST:downlink.wait<", "waiter woken, reads the result"),
    ("REST:statuses<", "the command's status read (2 reads)"),
    ("REST:http.out", "the answer built"),
    ("client:answer", "the answer to the client"),
)
LAN_STEPS: Final = (
    ("GW:edge.send_command>", "gRPC request to the gateway, bearer, checks"),
    ("GW:edge.send_command<", "the gateway's command path: MQTT, device, ack, records"),
    ("client:answer", "gRPC answer to the client"),
)
# Work beside the command: the outbox batch of a command's result and state report,
# applied by the holder (a write transaction of its own).
BESIDE: Final = ("HOLD:bridge.apply_batch", "HOLD:bridge.send_down", "HOLD:downlink.deliver")


def chain(
    windows: list[tuple[int, int]],
    marks: list[tuple[int, str]],
    steps: Sequence[tuple[str, str]],
) -> list[tuple[str, str, float, float, int]]:
    """Per step: its median time after the send, the median time since the step before
    (each step is the first of its mark after the step before, within the command's
    window) and how many commands had it."""
    marks = sorted(marks)
    times = [t for t, _ in marks]
    found: list[dict[str, int]] = []
    for began, ended in windows:
        at: dict[str, int] = {"client:send": began}
        lo, hi = bisect.bisect_left(times, began), bisect.bisect_right(times, ended)
        inside = marks[lo:hi]
        last, k = began, 0
        for label, _ in steps:
            if label == "client:answer":
                at[label] = ended
                continue
            while k < len(inside) and not (inside[k][1] == label and inside[k][0] >= last):
                k += 1
            if k == len(inside):  # not there: the next step looks from the last one found
                k = bisect.bisect_left(inside, (last, ""))
                continue
            at[label] = last = inside[k][0]
        found.append(at)
    rows = []
    before = "client:send"
    for label, what in steps:
        having = [f for f in found if label in f]
        since = [f[label] - f[before] for f in having if before in f]
        after = [f[label] - f["client:send"] for f in having]
        rows.append(
            (
                label,
                what,
                statistics.median(after) / 1e6 if after else math.nan,
                statistics.median(since) / 1e6 if since else math.nan,
                len(having),
            )
        )
        before = label if having else before
    return rows


def trips(
    windows: list[tuple[int, int]], marks: list[tuple[int, str]], prefix: str
) -> dict[str, float]:
    """The mean count per command of the marks starting with `prefix`, by what follows it."""
    by: dict[str, list[int]] = {}
    for t, mark in marks:
        if mark.startswith(prefix):
            by.setdefault(mark.removeprefix(prefix), []).append(t)
    out = {}
    for what, times in by.items():
        times.sort()
        inside = sum(
            bisect.bisect_right(times, ended) - bisect.bisect_left(times, began)
            for began, ended in windows
        )
        out[what] = inside / len(windows)
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def beside(
    windows: list[tuple[int, int]], marks: list[tuple[int, str]], label: str
) -> tuple[int, float]:
    """How many commands had `label`'s calls running during them, and the median time
    they ran within those commands (ms)."""
    spans: list[tuple[int, int]] = []
    opened: int | None = None
    for t, mark in sorted(marks):
        if mark == label + ">":
            opened = t
        elif mark == label + "<" and opened is not None:
            spans.append((opened, t))
            opened = None
    overlaps = []
    for began, ended in windows:
        inside = sum(
            max(0, min(ended, e) - max(began, b)) for b, e in spans if b < ended and e > began
        )
        if inside:
            overlaps.append(inside / 1e6)
    return len(overlaps), statistics.median(overlaps) if overlaps else 0.0


# --- the run -----------------------------------------------------------------------------


async def until_visible(relay: Relay, site: Site) -> float:
    """Wait until `relay` knows every light of the site and its gateway is connected (the
    node that does not hold the bridge learns it from the link rows, a second or so
    later); returns how long it took."""
    began = time.monotonic()
    hotel = site.hotel
    async with httpx.AsyncClient(base_url=relay.base_url, timeout=HTTP_TIMEOUT_S) as http:
        while True:
            relay.check()
            links = _body(
                await http.get(f"/v1/hotels/{hotel.hotel_id}/sync", headers=hotel.headers), 200
            )
            known = [
                (
                    await http.get(
                        f"/v1/hotels/{hotel.hotel_id}/devices/{d}", headers=hotel.headers
                    )
                ).status_code
                == 200
                for d in light_ids()
            ]
            if any(link["connected"] for link in links) and all(known):
                return time.monotonic() - began
            if time.monotonic() - began > START_TIMEOUT_S:
                raise TimeoutError(f"{site.label}: the gateway or its lights never showed")
            await asyncio.sleep(0.1)


async def until_online(stub: LanServiceAsyncStub, site: Site) -> None:
    """Wait until the gateway sees every light online (connected and reporting)."""
    auth = (("authorization", f"Bearer {site.token}"),)
    began = time.monotonic()
    while True:
        status = await stub.GetGatewayStatus(
            lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=5
        )
        if status.devices_online >= LIGHTS:
            return
        if time.monotonic() - began > START_TIMEOUT_S:
            raise TimeoutError(f"{site.label}: {status.devices_online} of {LIGHTS} lights online")
        await asyncio.sleep(0.1)


def note(began: float, what: str) -> None:
    print(f"  {time.monotonic() - began:6.1f} s  {what}", file=sys.stderr)


def pid_of(process: subprocess.Popen[bytes] | None) -> int:
    assert process is not None
    return process.pid


def broker_pids(brokers: Sequence[MosquittoBroker]) -> list[int]:
    """The Mosquitto processes of these brokers (found by their config's directory)."""
    dirs = [str(mq.workdir) for mq in brokers]
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if "mosquitto" in cmdline and any(d in cmdline for d in dirs):
            found.append(process.pid)
    return found


async def pg_backends(database_url: str) -> list[int]:
    """PostgreSQL's server processes serving the two-node relays' database."""
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1",
            database_url.rsplit("/", 1)[1],
            timeout=5,
        )
    finally:
        await conn.close()
    return [int(row["pid"]) for row in rows]


def stop_devices(process: multiprocessing.process.BaseProcess) -> None:
    process.terminate()
    process.join(timeout=10)


async def run(sizes: Sizes, trace: Path | None, profile: Path | None) -> Measured:
    db_name, db_url = await create_database("bellhop_bench_remote")
    try:
        with contextlib.ExitStack() as stack:
            # Torn down in reverse: the devices, the gateways, the relays, the brokers.
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bellhop-rc-")))
            # A broker per hotel, as on site (and a device's account is its id).
            mq_one, mq_two = stack.enter_context(broker()), stack.enter_context(broker())
            measured = await measured_run(
                stack, workdir, db_url, (mq_one, mq_two), sizes, trace, profile
            )
            stopping = time.monotonic()
        note(stopping, "every process stopped")
        return measured
    finally:
        await drop_database(db_name)


async def measured_run(
    stack: contextlib.ExitStack,
    workdir: Path,
    db_url: str,
    brokers: tuple[MosquittoBroker, MosquittoBroker],
    sizes: Sizes,
    trace: Path | None,
    profile: Path | None,
) -> Measured:
    solo_db = f"sqlite:///{workdir / 'solo' / 'relay.db'}"
    solo = Relay("relay-solo", workdir / "solo", {"database_url": solo_db}, trace)
    shared = {"database_url": db_url, "bus_backend": "redis", "redis_url": REDIS_URL}
    node_a = Relay("relay-a", workdir / "pair", {**shared, "node_id": "relay-a"}, trace)
    node_b = Relay("relay-b", workdir / "pair", {**shared, "node_id": "relay-b"}, trace)
    for relay in (solo, node_a, node_b):
        relay.profile = profile
        relay.workdir.mkdir(exist_ok=True)
    stack.callback(stop, solo, node_a, node_b)
    began = time.monotonic()
    solo.start()
    node_a.start()
    await asyncio.gather(solo.ready(), node_a.ready())
    node_b.start()  # after A: the schema is migrated and the signing key written
    await node_b.ready()
    note(began, "relays ready")

    one_owner, two_owner = await asyncio.gather(tenant(solo), tenant(node_b))
    one = Site("one-node", one_owner, workdir / "site-1", brokers[0])
    two = Site("two-node", two_owner, workdir / "site-2", brokers[1])
    stack.callback(stop, one, two)
    for site, holder in ((one, solo), (two, node_a)):
        site.trace, site.profile = trace, profile
        site.workdir.mkdir()
        config = site.configure()
        await enrol_gateway(holder, site.hotel, site.data_dir)  # its bridge goes to `holder`
        site.start(config)
    devices = multiprocessing.get_context("spawn").Process(
        target=run_devices, args=(one.device_specs() + two.device_specs(),), daemon=True
    )
    devices.start()
    stack.callback(stop_devices, devices)
    for site in (one, two):
        wait_for_port("127.0.0.1", site.api_port, timeout=START_TIMEOUT_S)
    visible_s = await asyncio.gather(until_visible(solo, one), until_visible(node_b, two))
    note(began, f"gateways and lights visible in the relays ({max(visible_s):.1f} s)")

    rest_one = Http(solo.http_port, one.hotel.headers)
    rest_two = Http(node_b.http_port, two.hotel.headers)  # node B; node A holds the bridge
    health = Http(solo.http_port, {})
    run_id = secrets.token_hex(3)  # command ids of this run
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{one.api_port}") as lan_one,
            grpc.aio.insecure_channel(f"127.0.0.1:{two.api_port}") as lan_two,
        ):
            stub_one = lan_pb2_grpc.LanServiceStub(lan_one)
            stub_two = lan_pb2_grpc.LanServiceStub(lan_two)
            await asyncio.gather(until_online(stub_one, one), until_online(stub_two, two))
            note(began, "every light online on its gateway")
            paths = {
                "lan": lan_path(stub_one, one, f"l1{run_id}"),
                "remote": remote_path(rest_one, one, f"r1{run_id}"),
                "remote_2node": remote_path(rest_two, two, f"r2{run_id}"),
                "lan2": lan_path(stub_two, two, f"l2{run_id}"),
                "rest_floor": health_path(health),
            }
            meter = CpuMeter(
                {
                    "client": [os.getpid()],
                    **{r.name: [pid_of(r.process)] for r in (solo, node_a, node_b)},
                    **{f"gateway-{s.label}": [pid_of(s.process)] for s in (one, two)},
                    "devices": [devices.pid or 0],
                    "brokers": broker_pids(brokers),
                    "postgres": await pg_backends(db_url),
                }
            )
            before = meter.sample()
            await asyncio.sleep(IDLE_S)  # what each process costs with no command at all
            after = meter.sample()
            measured = await measure(paths, sizes, meter)
            note(began, f"measured ({measured.seconds:.1f} s after the warm-up)")
            measured.idle_cpu = {p: (after[p] - before[p]) / IDLE_S * 100 for p in after}
    finally:
        for client in (rest_one, rest_two, health):
            await client.close()
    for relay in (solo, node_a, node_b):
        relay.check()
    return measured


def figures(measured: Measured, sizes: Sizes) -> dict[str, Any]:
    samples = measured.samples

    def p(name: str, pct: float) -> float:
        return round(percentile(samples[name], pct), 3)

    for name, values in samples.items():
        print(
            f"  {name:>14}: p50 {percentile(values, 50):7.3f} ms"
            f"  p90 {percentile(values, 90):7.3f} ms  p99 {percentile(values, 99):7.3f} ms"
            f"  max {max(values):7.3f} ms",
            file=sys.stderr,
        )
    remote, lan, two = p("remote", 50), p("lan", 50), p("remote_2node", 50)
    cpu = {
        name: {
            part: round(seconds * 1000 / len(samples[name]), 3)
            for part, seconds in measured.cpu[name].items()
            if seconds > 0
        }
        for name in ("remote", "remote_2node", "lan")
    }
    for name, parts in cpu.items():
        spent = ", ".join(f"{part} {ms:.2f}" for part, ms in parts.items())
        print(f"  CPU ms per command, {name}: {spent}", file=sys.stderr)
    idle = {part: round(pct, 1) for part, pct in measured.idle_cpu.items()}
    print(f"  CPU % of a core with no command: {idle}", file=sys.stderr)
    return {
        "commands": sizes.commands,
        "warm_up": sizes.warm_up,
        "block": sizes.block,
        "remote_p50_ms": remote,
        "remote_p99_ms": p("remote", 99),
        "lan_p50_ms": lan,
        "lan_p99_ms": p("lan", 99),
        "ratio": round(remote / lan, 3),
        "remote_2node_p50_ms": two,
        "remote_2node_p99_ms": p("remote_2node", 99),
        "ratio_2node": round(two / remote, 3),
        "lan2_p50_ms": p("lan2", 50),
        "rest_floor_p50_ms": p("rest_floor", 50),
        "cpu_ms_per_command": cpu,
        "idle_cpu_pct": idle,
        "measured_s": round(measured.seconds, 1),
        "target_ratio": TARGET_RATIO,
        "target_ratio_2node": TARGET_RATIO_2NODE,
        "cpus": os.cpu_count(),
    }


def process_mark(names: dict[str, str], label: str) -> str:
    """`HOLD:mark` as the mark of the process playing that part (`relay-a:mark`)."""
    role, _, rest = label.partition(":")
    return f"{names.get(role, role)}:{rest}"


def traced(measured: Measured, trace: Path) -> dict[str, Any]:
    """Where the time of each path goes, from the marks of every process (--trace)."""
    marks = [m for path in trace.glob("*.marks") for m in read_marks(path, path.stem)]
    out: dict[str, Any] = {}
    cases: tuple[tuple[str, Sequence[tuple[str, str]], dict[str, str]], ...] = (
        ("remote", REMOTE_STEPS, {"REST": "relay-solo", "HOLD": "relay-solo"}),
        ("remote_2node", REMOTE_STEPS, {"REST": "relay-b", "HOLD": "relay-a"}),
        ("lan", LAN_STEPS, {"HOLD": "relay-solo"}),
    )
    for name, steps, nodes in cases:
        gateway = "gateway-two-node" if name == "remote_2node" else "gateway-one-node"
        names = {**nodes, "GW": gateway}
        named = functools.partial(process_mark, names)
        windows = measured.windows[name]
        rows = chain(windows, marks, [(named(label), what) for label, what in steps])
        print(f"\n  {name} ({len(windows)} commands)", file=sys.stderr)
        print(f"  {'step':<36} {'at ms':>7} {'took ms':>8} {'n':>5}  spent on", file=sys.stderr)
        for label, what, at, took, count in rows:
            print(f"  {label:<36} {at:7.3f} {took:8.3f} {count:5d}  {what}", file=sys.stderr)
        out[name] = {label: round(took, 3) for label, _, _, took, _ in rows}
        for process in sorted(set(nodes.values())):
            ops = trips(windows, marks, f"{process}:db.op:")
            total = sum(ops.values())
            print(
                f"  database trips of {process} per command (mean): {total:.1f};"
                f" by the relay's function: "
                + ", ".join(f"{fn} {count:.1f}" for fn, count in ops.items() if count >= 0.05),
                file=sys.stderr,
            )
            out[name][f"{process} database trips"] = {
                k: round(v, 2) for k, v in ops.items() if v >= 0.05
            }
        if nodes:
            for label in BESIDE:
                count, median_ms = beside(windows, marks, named(label))
                print(
                    f"  beside: {named(label)} ran during {count} commands,"
                    f" {median_ms:.3f} ms of each (median)",
                    file=sys.stderr,
                )
                out[name][f"beside {named(label)}"] = [count, round(median_ms, 3)]
    return out


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:  # a relay or gateway of --trace
        sys.exit(serve(sys.argv[2], sys.argv[3:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="200 commands per path (< 60 s)")
    parser.add_argument("--commands", type=int, help="commands per path (default 2,000)")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run each relay and gateway under cProfile, its statistics written to this"
        " directory (<process>.prof) and the busiest functions printed; costs time too",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="mark each step of a command in every process and say where the time goes"
        " (the marks cost time too: use the figures of a run without it)",
    )
    args = parser.parse_args()
    sizes = Sizes(
        commands=args.commands or (200 if args.quick else 2_000),
        warm_up=50 if args.quick else WARM_UP,
        block=BLOCK,
    )
    with tempfile.TemporaryDirectory(prefix="bellhop-rc-trace-") as tmp:
        trace = Path(tmp) if args.trace else None
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
        measured = asyncio.run(run(sizes, trace, args.profile))
        result = figures(measured, sizes)
        if trace is not None:
            result["trace"] = traced(measured, trace)
        if args.profile is not None:
            profiled(args.profile)
    report(result)


if __name__ == "__main__":
    main()
