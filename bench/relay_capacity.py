"""Relay capacity: memory per idle bridge, handshakes, a restart under 10,000 gateways.

One relay process (`python -m bellhop_cli.main cloud run`, SQLite) holds the
bridges of N gateways (10,000; `--quick`: 1,000), spread over CLIENT_PROCESSES
load processes (bench/_relay_load.py). Every gateway does the real handshake
(Hello, Challenge, Proof signed with its Ed25519 enrolment key, Welcome),
answers the relay's first-connection snapshot request (an empty hotel: all
gateways share one), then idles with the protocol's heartbeats
(BELLHOP_CLOUD_BRIDGE_HEARTBEAT_S=60).

- Memory: the relay's VmRSS (/proc) once it has settled, after a warm-up of 100
  bridges, at 1,000 and at N bridges; `kib_per_bridge_<n>` is the growth past
  the warm-up divided by the bridges added. The relay cannot be made to collect
  from outside, so "settled" means SETTLE_SAMPLES readings within SETTLE_KIB.
  At 1,000 the figure is the less sure one: the relay reuses heap its start-up
  freed, which a few hundred bridges fill.
- `connect_per_s`: handshakes completed per second while opening from 100 to
  N, CONCURRENCY first handshakes in flight per load process;
  `relay_cpu_ms_per_connect` the relay's CPU per handshake over that stretch.
- Idle: the relay's CPU over a window with every bridge open
  (`idle_cpu_pct`), and per heartbeat the gateways sent in it.
- The restart: SIGTERM to the relay, a new relay on the same ports as soon as
  the old one has exited, every gateway reconnecting with the edge's back-off
  (full jitter, the edge's `reconnect_min_s` and `reconnect_max_s`, 1 s and
  60 s; `--quick` uses a tenth of both so that it ends within a minute).
  `reconnect_all_s` runs from the SIGTERM to the last gateway's Welcome from
  the new relay (`reconnect_after_start_s` from the new relay's launch; null
  if not all were back within RECONNECT_BOUND_S, `back` says how many were).
  `refused` counts what a healthy gateway should never meet on the new relay:
  any connection attempt begun after the old relay exited that failed other than
  by "connection refused" (nothing listening yet), and any close of such a
  handshake or bridge (`refused_by_reason`, `refused_gateways`). What the old
  relay does while it shuts down (its `shutting_down` Error frame, sockets
  dropped, handshakes cut) is expected and reported apart (`during_shutdown`).
  A relay that has not exited EXIT_BOUND_S after the SIGTERM is killed, as a
  service manager would (`shutdown_killed`). `load_lag_max_s` is how late the
  load processes' event loops ran in the restart: the load shares the machine's
  cores, and a late load times out handshakes of its own.
- The floor, in the same run: bare idle `websockets` connections (no
  compression, no pings, a pending read) to websockets' own server in a
  process of its own, RSS after a gc.collect() there, at the same counts;
  `ratio` is `kib_per_bridge_<N>` over `floor_kib_per_conn_<N>`.

    nice .venv/bin/python bench/relay_capacity.py [--quick] [--bridges N]
        [--backoff MIN_S MAX_S] [--variant endpoint [--profile | --trace]] [--logs DIR]

Prints one JSON object as its last line. The keys for 1,000 and 10,000 bridges
are always there, null when not measured (with `--quick` the 10,000 ones;
with `--bridges N` the keys for N are added, e.g. `kib_per_bridge_2k`); the
restart's keys are for the N gateways of the run. `bridges_max` is the largest
N the limits on open files (the hard limit, to which every process raises its
own) and on local ports allow here; a larger N is cut to it, and said so.

Variations, to find where the relay's time and memory go: `--variant endpoint`
serves the bridges from Relay and BridgeEndpoint alone in a process of this
benchmark (no HTTP app, RSS taken after a gc.collect()), `--profile` adds
cProfile to that process, `--trace` tracemalloc (heap growth per bridge by
allocation site). `--backoff` tries other edge back-off settings.

Enrolment: the owner, organisation and hotel are created over REST and the
first ENROLLED_OVER_REST gateways enrol over REST (token, key, signature); the
others are written straight into the relay's SQLite tables (`enrolment_tokens`
and `gateways`, the rows REST enrolment writes, without their audit entries),
since 10,000 REST enrolments would take most of a run. Keys are Ed25519 from
seeds (`_relay_load.gateway_key`), so each load process derives its own.

Targets: <= 24 KiB per bridge at 10,000; all 10,000 back within 60 s of a
restart, none refused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import httpx
from _relay_load import cpu_s, gateway_key, raise_fd_limit, rss_kib

LOAD = Path(__file__).resolve().parent / "_relay_load.py"
CLIENT_PROCESSES = 4
CONCURRENCY = 32  # first handshakes in flight per load process
WARM_UP = 100
ENROLLED_OVER_REST = 20
HEARTBEAT_S = 60
TARGET_KIB_PER_BRIDGE = 24.0
TARGET_RECONNECT_S = 60.0
PASSWORD = "benchmark password"
# RSS has settled when this many samples, SETTLE_EVERY_S apart, lie within
# SETTLE_KIB of each other (or the bound passes, which is reported).
SETTLE_SAMPLES = 4
SETTLE_EVERY_S = 0.5
SETTLE_KIB = 256
SETTLE_BOUND_S = 30.0
REPLY_TIMEOUT_S = 300.0  # a load process's answer to a command (opening thousands)
# The relay's own shutdown of N bridges; systemd's default stop timeout, after
# which a deployment's relay would be killed too.
EXIT_BOUND_S = 90.0
READY_BOUND_S = 60.0
OPEN_RETRY_BOUND_S = 60.0
# All gateways back on the new relay, from its start; past the bound the run
# reports how many came back.
RECONNECT_BOUND_S = 180.0
CLOSED_RE = re.compile(r"bridge of \S+ closed: (\w+)")
# The relay's shutdown is one line for all its bridges.
CLOSED_ALL_RE = re.compile(r"bridge: (\d+) connections closed \((\w+)\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def shares(total: int, parts: int) -> list[int]:
    """`total` split over `parts` as evenly as possible."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def label(count: int) -> str:
    return f"{count // 1000}k" if count % 1000 == 0 else str(count)


def bridges_max(hard_nofile: int) -> int:
    """The most bridges one relay can hold here: its open files and the local ports."""
    low, high = (int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    # Files the relay has open besides its bridges: the database, its WAL, the
    # listening sockets, the interpreter's own; 200 is ample.
    return min(hard_nofile - 200, high - low + 1 - 200)


# --- load processes ----------------------------------------------------------------------


class Worker:
    """A process of bench/_relay_load.py, spoken to one JSON line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lock = asyncio.Lock()

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(LOAD),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=64 << 20,  # the event log of thousands of gateways is one line
        )
        return cls(process)

    async def ask(self, timeout: float = REPLY_TIMEOUT_S, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        async with self.lock:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            await self.process.stdin.drain()
            return await self.reply(timeout)

    async def reply(self, timeout: float = REPLY_TIMEOUT_S) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise SystemExit(f"load process {self.process.pid} exited ({self.process.returncode})")
        body: dict[str, Any] = json.loads(line)
        return body

    async def stop(self) -> None:
        """Ask it to quit; kill it if it does not within a few seconds."""
        if self.process.returncode is None:
            try:
                await self.ask(timeout=20, op="quit")
                await asyncio.wait_for(self.process.wait(), 10)
            except (TimeoutError, SystemExit, ConnectionError, json.JSONDecodeError):
                pass
        await kill(self.process)


async def kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await asyncio.wait_for(process.wait(), 10)


@asynccontextmanager
async def workers(starts: Sequence[Sequence[str]]) -> AsyncIterator[list[Worker]]:
    """Load processes, always stopped (or killed) on the way out."""
    started: list[Worker] = []
    try:
        for args in starts:
            started.append(await Worker.start(*args))
        yield started
    finally:
        await asyncio.gather(*(w.stop() for w in started), return_exceptions=True)
        for worker in started:
            await kill(worker.process)


async def open_to(clients: list[Worker], total: int) -> tuple[float, int]:
    """Open bridges (or bare connections) up to `total` over the load processes.

    Returns the seconds until each had opened or failed once, and how many are open
    (gateways that failed get OPEN_RETRY_BOUND_S to come back with their back-off).
    """
    began = time.monotonic()
    replies = await asyncio.gather(
        *(
            c.ask(op="open", count=n)
            for c, n in zip(clients, shares(total, len(clients)), strict=True)
        )
    )
    seconds = time.monotonic() - began
    opened = sum(int(r["open"]) for r in replies)
    if opened < total and "started" in replies[0]:  # gateways retry; bare clients do not

        async def all_open() -> bool:
            nonlocal opened
            opened = sum(int(s["open"]) for s in await status_all(clients))
            return opened >= total

        await until(all_open, OPEN_RETRY_BOUND_S, 0.25)
    if opened < total:
        print(f"  {opened} of {total} open", file=sys.stderr)
    return seconds, opened


async def status_all(clients: list[Worker], since: float = 0.0) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(c.ask(op="status", since=since) for c in clients)))


async def until(
    predicate: Callable[[], Awaitable[bool]], bound_s: float, every_s: float = 0.1
) -> bool:
    """Poll `predicate` until it holds or `bound_s` passes; whether it held."""
    deadline = time.monotonic() + bound_s
    while True:
        if await predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(every_s)


@dataclass
class Growth:
    """RSS at the warm-up and at each count, and the KiB per connection past the warm-up."""

    at: dict[int, int] = field(default_factory=dict)
    open: dict[int, int] = field(default_factory=dict)  # what was open at each count
    unsettled: list[int] = field(default_factory=list)  # counts whose RSS never settled

    async def settle(self, count: int, read: Callable[[], Awaitable[int]]) -> None:
        """RSS once it stops moving (SETTLE_SAMPLES within SETTLE_KIB), in KiB."""
        samples: list[int] = []

        async def steady() -> bool:
            samples.append(await read())
            recent = samples[-SETTLE_SAMPLES:]
            return len(recent) == SETTLE_SAMPLES and max(recent) - min(recent) <= SETTLE_KIB

        if not await until(steady, SETTLE_BOUND_S, SETTLE_EVERY_S):
            self.unsettled.append(count)
            print(
                f"  RSS still moving after {SETTLE_BOUND_S:.0f} s: {samples[-4:]}", file=sys.stderr
            )
        self.at[count] = samples[-1]

    def per_conn(self, count: int) -> float | None:
        if count not in self.at:
            return None
        added = self.open[count] - self.open[WARM_UP]
        return round((self.at[count] - self.at[WARM_UP]) / added, 2) if added > 0 else None


async def measure_growth(
    clients: list[Worker],
    counts: list[int],
    read: Callable[[], Awaitable[int]],
    cpu: Callable[[], float],
    probe: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[Growth, float, float]:
    """Open to the warm-up, then to each count, RSS settled at each. Returns the RSS
    figures, the handshakes per second from the warm-up to the last count, and the
    server's CPU milliseconds per handshake over the same stretch (settling included,
    which costs an idle server little)."""
    growth = Growth()
    _, growth.open[WARM_UP] = await open_to(clients, WARM_UP)
    await growth.settle(WARM_UP, read)
    print(f"  {WARM_UP:6d} open  RSS {growth.at[WARM_UP] / 1024:7.1f} MiB", file=sys.stderr)
    if probe is not None:
        await probe(WARM_UP)
    opening = 0.0
    cpu_before = cpu()
    for count in counts:
        seconds, growth.open[count] = await open_to(clients, count)
        opening += seconds
        await growth.settle(count, read)
        print(f"  {count:6d} open  RSS {growth.at[count] / 1024:7.1f} MiB", file=sys.stderr)
        if probe is not None:
            await probe(count)
    added = growth.open[counts[-1]] - growth.open[WARM_UP]
    return growth, added / opening, 1000 * (cpu() - cpu_before) / max(1, added)


async def floor(port: int, counts: list[int]) -> tuple[Growth, float, float]:
    """Bare idle websockets connections to websockets' own server in its own process."""
    print("floor: bare websockets", file=sys.stderr)
    n = counts[-1]
    async with workers([("bare-server", str(port))]) as (server,):
        await server.reply(30)
        pid = server.process.pid

        async def read() -> int:
            return int((await server.ask(op="rss", gc=True))["rss_kib"])

        starts = [
            ("bare-clients", str(port), "0", str(size), str(CONCURRENCY))
            for size in shares(n, CLIENT_PROCESSES)
        ]
        async with workers(starts) as clients:
            growth, rate, cpu_ms = await measure_growth(clients, counts, read, lambda: cpu_s(pid))
    return growth, rate, cpu_ms


# --- the relay ---------------------------------------------------------------------------


@dataclass
class RelaySetup:
    workdir: Path
    http_port: int
    bridge_port: int
    variant: str  # "relay": `bellhop cloud run`; "endpoint": the bridge endpoint alone
    profile: bool = False
    trace: bool = False

    @property
    def database(self) -> Path:
        return self.workdir / "relay.db"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_CLOUD_")}
        env.update(
            {
                "BELLHOP_CLOUD_DATABASE_URL": f"sqlite:///{self.database}",
                "BELLHOP_CLOUD_PORT": str(self.http_port),
                "BELLHOP_CLOUD_BRIDGE_PORT": str(self.bridge_port),
                "BELLHOP_CLOUD_SIGNING_KEY_PATH": str(self.workdir / "signing-key.pem"),
                "BELLHOP_CLOUD_BRIDGE_HEARTBEAT_S": str(HEARTBEAT_S),
                # Cheap password hashing: the benchmark logs in once.
                "BELLHOP_CLOUD_PASSWORD_TIME_COST": "1",
                "BELLHOP_CLOUD_PASSWORD_MEMORY_KIB": "1024",
                "BELLHOP_CLOUD_PASSWORD_PARALLELISM": "1",
            }
        )
        return env


@dataclass
class Server:
    """One relay process (or the endpoint alone), started by this benchmark."""

    process: asyncio.subprocess.Process
    log: Path
    started: float
    worker: Worker | None = None  # the endpoint alone answers commands (RSS after a gc)

    async def rss(self) -> int:
        if self.worker is not None:
            return int((await self.worker.ask(op="rss", gc=True))["rss_kib"])
        return rss_kib(self.process.pid)

    def cpu(self) -> float:
        return cpu_s(self.process.pid)

    def closes(self) -> dict[str, int]:
        """Closes it logged, by code (it logs every close but a peer's dropped socket, and
        those of its own shutdown in one line)."""
        text = self.log.read_text(errors="replace")
        closes = Counter(m.group(1) for m in CLOSED_RE.finditer(text))
        for m in CLOSED_ALL_RE.finditer(text):
            closes[m.group(2)] += int(m.group(1))
        return dict(closes)


async def start_server(setup: RelaySetup, name: str, variant: str) -> Server:
    """Start it and wait until it serves bridges; `started` is when it was launched."""
    log = setup.workdir / f"{name}.log"
    began = time.monotonic()
    with log.open("wb") as out:
        if variant == "relay":
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bellhop_cli.main",
                "cloud",
                "run",
                env=setup.env(),
                cwd=setup.workdir,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
            server = Server(process, log, began)
        else:
            profile = [str(setup.workdir / f"{name}.prof")] if setup.profile else []
            env = setup.env()
            if setup.trace:
                env["BELLHOP_BENCH_TRACEMALLOC"] = "1"
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                str(LOAD),
                "endpoint-server",
                *profile,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=out,
            )
            server = Server(process, log, began, Worker(process))
    try:
        if server.worker is not None:
            await server.worker.reply(READY_BOUND_S)
        else:
            await wait_ready(setup, server)
    except BaseException:
        await kill(process)
        raise
    return server


async def wait_ready(setup: RelaySetup, server: Server) -> None:
    """Poll /readyz; the relay listens for bridges before its HTTP app answers."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{setup.http_port}") as http:

        async def ready() -> bool:
            if server.process.returncode is not None:
                raise SystemExit(f"relay exited with {server.process.returncode}: {server.log}")
            try:
                return (await http.get("/readyz", timeout=2)).status_code == 200
            except httpx.TransportError:
                return False

        if not await until(ready, READY_BOUND_S, 0.02):
            raise SystemExit(f"relay not ready within {READY_BOUND_S:.0f} s")


async def stop_server(server: Server) -> tuple[float, bool]:
    """SIGTERM, then SIGKILL past EXIT_BOUND_S; (seconds to exit, whether it was killed)."""
    began = time.monotonic()
    if server.process.returncode is not None:
        return 0.0, False
    server.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(server.process.wait(), EXIT_BOUND_S)
    except TimeoutError:
        await kill(server.process)
        return time.monotonic() - began, True
    return time.monotonic() - began, False


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise SystemExit(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response.json()


async def enrol(setup: RelaySetup, count: int) -> dict[str, Any]:
    """An owner, an organisation and a hotel over REST; `count` gateways enrolled, the
    first ENROLLED_OVER_REST over REST and the rest written into the tables directly."""
    from bellhop_cloud.auth.keys import b64url, raw_public_bytes
    from bellhop_cloud.enrolment import ENROLMENT_CONTEXT

    gateways: list[tuple[int, str]] = []
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{setup.http_port}", timeout=30
    ) as http:
        email = "owner@bench.example.com"
        user = expect(
            await http.post(
                "/v1/auth/register",
                json={"email": email, "password": PASSWORD, "display_name": "owner"},
            ),
            201,
        )
        login = expect(
            await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}), 200
        )
        auth = {"Authorization": f"Bearer {login['access_token']}"}
        org_id = expect(await http.post("/v1/orgs", json={"name": "Bench"}, headers=auth), 201)[
            "id"
        ]
        hotel_id = expect(
            await http.post(
                f"/v1/orgs/{org_id}/hotels",
                json={"name": "Bench", "timezone": "UTC"},
                headers=auth,
            ),
            201,
        )["id"]
        for index in range(min(count, ENROLLED_OVER_REST)):
            token = expect(
                await http.post(f"/v1/hotels/{hotel_id}/enrolment-tokens", json={}, headers=auth),
                201,
            )["token"]
            key = gateway_key(index)
            body = {
                "token": token,
                "public_key": b64url(raw_public_bytes(key.public_key())),
                "signature": b64url(key.sign(ENROLMENT_CONTEXT + token.encode())),
                "name": f"gw {index}",
            }
            gateways.append(
                (index, expect(await http.post("/v1/gateways/enrol", json=body), 201)["id"])
            )
    gateways += insert_gateways(
        setup.database, range(ENROLLED_OVER_REST, count), org_id, hotel_id, user["id"]
    )
    return {"hotel_id": hotel_id, "gateways": gateways}


def insert_gateways(
    database: Path, indices: range, org_id: str, hotel_id: str, user_id: str
) -> list[tuple[int, str]]:
    """The rows REST enrolment writes (a used token, the gateway), in one transaction."""
    import sqlalchemy as sa
    from bellhop_cloud.auth.keys import raw_public_bytes
    from bellhop_cloud.db.schema import enrolment_tokens, gateways

    now = datetime.now(UTC)
    ids = [(i, f"gw_{i:016x}") for i in indices]
    tokens = [
        {
            "id": f"enr_{i:016x}",
            "token_hash": secrets.token_hex(32),  # a digest of a token nobody holds
            "org_id": org_id,
            "hotel_id": hotel_id,
            "created_by": user_id,
            "created_at": now,
            "expires_at": now + timedelta(hours=1),
            "used_at": now,
            "gateway_id": gateway_id,
        }
        for i, gateway_id in ids
    ]
    rows = [
        {
            "id": gateway_id,
            "org_id": org_id,
            "hotel_id": hotel_id,
            "name": f"gw {i}",
            "public_key": raw_public_bytes(gateway_key(i).public_key()),
            "enrolled_at": now,
            "enrolment_token_id": f"enr_{i:016x}",
        }
        for i, gateway_id in ids
    ]
    if rows:
        # The relay runs beside this writer (WAL); the busy timeout covers its writes.
        engine = sa.create_engine(f"sqlite:///{database}", connect_args={"timeout": 30})
        try:
            with engine.begin() as conn:
                conn.execute(enrolment_tokens.insert(), tokens)
                conn.execute(gateways.insert(), rows)
        finally:
            engine.dispose()
    return ids


async def restart(
    setup: RelaySetup, old: Server, clients: list[Worker], n: int
) -> tuple[Server, dict[str, Any]]:
    """SIGTERM, a new relay once the old one exits, and every gateway back on it."""
    print("restart: SIGTERM, new relay, gateways reconnect", file=sys.stderr)
    await asyncio.gather(*(c.ask(op="log") for c in clients))  # the loop-lag figures restart
    term = time.monotonic()
    shutdown_s, killed = await stop_server(old)
    exited = time.monotonic()
    new = await start_server(setup, "relay-2", setup.variant)
    ready = time.monotonic()
    cpu_ready = new.cpu()
    status: list[dict[str, Any]] = []

    async def all_back() -> bool:
        status[:] = await status_all(clients, new.started)
        return sum(int(s["open_since"]) for s in status) == n

    back = await until(all_back, RECONNECT_BOUND_S, 0.25)
    cpu_back = new.cpu()
    newest = max((s["newest"] for s in status if s["newest"] is not None), default=None)
    logs = await asyncio.gather(*(c.ask(op="log") for c in clients))
    events = [e for log in logs for e in log["log"] if e[0] >= term]
    refused: Counter[str] = Counter()
    during_shutdown: Counter[str] = Counter()
    reopened_on_old = 0
    refused_gateways: set[int] = set()
    for _at, index, what, attempt in events:
        # By when the connection attempt began: before the old relay had exited, the
        # attempt met the old relay (or its closing socket).
        if attempt <= exited:
            during_shutdown[what] += 1
            reopened_on_old += what == "open"
        elif what not in {"open", "connect:refused"}:
            refused[what] += 1
            refused_gateways.add(index)
    during_shutdown.pop("open", None)
    back_count = sum(int(s["open_since"]) for s in status)
    reached = len({(e[1], e[3]) for e in events if e[3] > exited and e[2] != "connect:refused"})
    return new, {
        "reconnect_all_s": round(newest - term, 2) if back and newest is not None else None,
        "reconnect_after_start_s": (
            round(newest - new.started, 2) if back and newest is not None else None
        ),
        "back": back_count,
        "shutdown_s": round(shutdown_s, 2),
        "shutdown_killed": killed,
        "restart_ready_s": round(ready - new.started, 2),
        # The new relay's CPU per connection attempt that reached it (after its start,
        # not refused by the kernel): per handshake when they all succeed.
        "restart_cpu_ms_per_attempt": (
            round(1000 * (cpu_back - cpu_ready) / reached, 2) if reached else None
        ),
        "refused": sum(refused.values()),
        "refused_gateways": len(refused_gateways),
        "refused_by_reason": dict(refused),
        "during_shutdown": dict(during_shutdown),
        "reopened_on_old_relay": reopened_on_old,
        "connect_refused_attempts": sum(1 for e in events if e[2] == "connect:refused"),
        # Connections tried since the SIGTERM (those then open included).
        "connect_attempts": len({(e[1], e[3]) for e in events}),
        "old_relay_closes": old.closes(),
        # Read before it stops: its own shutdown closes every bridge again.
        "new_relay_closes": new.closes(),
        "load_lag_max_s": max(log["lag_s"] for log in logs),
    }


async def relay_phase(
    workdir: Path,
    counts: list[int],
    setup: RelaySetup,
    backoff: tuple[float, float],
    idle_s: float,
) -> dict[str, Any]:
    n = counts[-1]
    print(f"relay ({setup.variant}): {n} gateways", file=sys.stderr)
    servers = [await start_server(setup, "relay-1", "relay")]
    try:
        spec = await enrol(setup, n)
        spec_path = workdir / "gateways.json"
        spec_path.write_text(json.dumps(spec))
        if setup.variant == "endpoint":
            # The same database and port, served by the endpoint alone.
            await stop_server(servers[0])
            servers.append(await start_server(setup, "endpoint-1", "endpoint"))
        server = servers[-1]
        starts: list[tuple[str, ...]] = []
        first = 0
        for size in shares(n, CLIENT_PROCESSES):
            starts.append(
                (
                    "gateways",
                    str(setup.bridge_port),
                    str(spec_path),
                    str(first),
                    str(first + size),
                    str(CONCURRENCY),
                    *(str(s) for s in backoff),
                )
            )
            first += size

        async def probe(count: int) -> None:
            # Heap growth by allocation site (tracemalloc in the endpoint's own process).
            if setup.trace and server.worker is not None:
                rows = (await server.worker.ask(op="trace", top=30))["trace"]
                for where, size, objects in rows:
                    print(
                        f"  {size / max(1, count - WARM_UP):8.1f} B/bridge "
                        f"{objects / max(1, count - WARM_UP):6.2f} obj/bridge  {where}",
                        file=sys.stderr,
                    )

        async with workers(starts) as clients:
            growth, rate, cpu_ms = await measure_growth(
                clients, counts, server.rss, server.cpu, probe
            )
            result: dict[str, Any] = {
                "growth": growth,
                "connect_per_s": round(rate, 1),
                "relay_cpu_ms_per_connect": round(cpu_ms, 2),
            }
            # The relay's CPU with every bridge idle: heartbeats (each gateway's every
            # HEARTBEAT_S, those opened more than HEARTBEAT_S ago) and its own timers.
            # A measuring window, not a wait for anything.
            beats = sum(s["heartbeats"] for s in await status_all(clients))
            before = server.cpu()
            await asyncio.sleep(idle_s)
            busy = server.cpu() - before
            beats = sum(s["heartbeats"] for s in await status_all(clients)) - beats
            result["idle_cpu_pct"] = round(100 * busy / idle_s, 1)
            result["idle_heartbeats_per_s"] = round(beats / idle_s, 1)
            # Each gateway heartbeat, with the relay's own heartbeat to that gateway.
            result["relay_cpu_ms_per_heartbeat"] = round(1000 * busy / beats, 2) if beats else None
            new, storm = await restart(setup, server, clients, n)
            servers.append(new)
            result.update(storm)
        return result
    finally:
        for server in servers:
            await stop_server(server)


def print_profile(path: Path, name: str) -> None:
    """The endpoint's heaviest functions by cumulative and own time."""
    import pstats

    print(f"--- profile of {name}", file=sys.stderr)
    stats = pstats.Stats(str(path), stream=sys.stderr)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(25)


def keep_logs(workdir: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        shutil.copy(log, into / log.name)


def pycache() -> None:
    """Let the processes of the benchmark keep their bytecode, outside the checkout.

    An installed relay has its modules compiled; here PYTHONDONTWRITEBYTECODE
    may be set and the virtualenv may hold no .pyc files, so every start would
    compile the relay's imports again (3 s of CPU here), in the restart too.
    The cache is the benchmark's own directory under the system's temporary
    directory, kept between runs.
    """
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "bellhop-bench-pycache")


async def run(
    n: int,
    variant: str,
    backoff: tuple[float, float],
    profile: bool,
    trace: bool,
    logs: Path | None,
) -> dict[str, Any]:
    hard = raise_fd_limit()
    most = bridges_max(hard)
    requested = n
    if n > most:
        print(f"{n} bridges exceed this machine's limits; measuring {most}", file=sys.stderr)
        n = most
    counts = sorted({min(1000, n), n})
    pycache()
    with tempfile.TemporaryDirectory(prefix="bellhop-relay-capacity-") as tmp:
        floor_growth, floor_rate, floor_cpu_ms = await floor(free_port(), counts)
        setup = RelaySetup(Path(tmp), free_port(), free_port(), variant, profile, trace)
        relay = await relay_phase(Path(tmp), counts, setup, backoff, 5.0 if n <= 1000 else 20.0)
        if logs is not None:
            keep_logs(Path(tmp), logs)
        if profile:
            for name in ("endpoint-1", "relay-2"):
                if (Path(tmp) / f"{name}.prof").exists():
                    print_profile(Path(tmp) / f"{name}.prof", name)
    growth: Growth = relay.pop("growth")
    big = label(n)
    out: dict[str, Any] = {
        "variant": variant,
        "bridges": n,
        "bridges_requested": requested,
        "bridges_max": most,
        "client_processes": CLIENT_PROCESSES,
        "kib_per_bridge_1k": growth.per_conn(1000),
        "kib_per_bridge_10k": growth.per_conn(10_000),
        f"kib_per_bridge_{big}": growth.per_conn(n),
        "floor_kib_per_conn_1k": floor_growth.per_conn(1000),
        "floor_kib_per_conn_10k": floor_growth.per_conn(10_000),
        f"floor_kib_per_conn_{big}": floor_growth.per_conn(n),
    }
    per, floor_per = growth.per_conn(n), floor_growth.per_conn(n)
    out["ratio"] = round(per / floor_per, 2) if per is not None and floor_per else None
    out["rss_mib"] = {label(k): round(v / 1024, 1) for k, v in growth.at.items()}
    out["rss_unsettled"] = [label(k) for k in growth.unsettled + floor_growth.unsettled]
    out["floor_rss_mib"] = {label(k): round(v / 1024, 1) for k, v in floor_growth.at.items()}
    out["floor_connect_per_s"] = round(floor_rate, 1)
    out["floor_cpu_ms_per_connect"] = round(floor_cpu_ms, 2)
    out["backoff_s"] = list(backoff)
    out.update(relay)
    out["target_kib_per_bridge"] = TARGET_KIB_PER_BRIDGE
    out["target_reconnect_s"] = TARGET_RECONNECT_S
    out["cpus"] = os.cpu_count()
    return out


def main() -> None:
    from bellhop_edge.config import BridgeConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="2,000 bridges, back-off a tenth of the edge's"
    )
    parser.add_argument("--bridges", type=int, help="how many bridges (default 10,000)")
    parser.add_argument(
        "--variant",
        choices=["relay", "endpoint"],
        default="relay",
        help="endpoint: the bridge endpoint alone in a process of this benchmark",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="with --variant endpoint: where the endpoint's CPU goes (cProfile), to stderr",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="with --variant endpoint: heap growth per bridge by allocation site, to stderr",
    )
    parser.add_argument(
        "--backoff",
        nargs=2,
        type=float,
        metavar=("MIN_S", "MAX_S"),
        help="the gateways' reconnect back-off (default: the edge's reconnect_min_s/max_s)",
    )
    parser.add_argument("--logs", type=Path, help="keep the relays' logs in this directory")
    args = parser.parse_args()
    if (args.profile or args.trace) and args.variant != "endpoint":
        parser.error("--profile and --trace need --variant endpoint")
    n = args.bridges or (1000 if args.quick else 10_000)
    edge = BridgeConfig()
    backoff = (edge.reconnect_min_s, edge.reconnect_max_s)
    if args.quick:
        # The edge's 60 s cap alone would take the restart past a minute.
        backoff = (backoff[0] / 10, backoff[1] / 10)
    if args.backoff:
        backoff = (args.backoff[0], args.backoff[1])
    result = asyncio.run(run(n, args.variant, backoff, args.profile, args.trace, args.logs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
