"""The processes bench/relay_capacity.py drives: gateways, bare clients, bare servers.

    python bench/_relay_load.py gateways PORT GATEWAYS_FILE START STOP CONCURRENCY MIN_S MAX_S
    python bench/_relay_load.py bare-clients PORT START STOP CONCURRENCY
    python bench/_relay_load.py bare-server PORT
    python bench/_relay_load.py endpoint-server        (the relay's config from BELLHOP_CLOUD_*)

Each reads one JSON command a line on stdin and answers each with one JSON
line on stdout; nothing else goes to stdout. The gateways are hand-driven
(no outbox, no SQLite) but speak the real protocol through the product's
`EdgeConnection` (Hello, Challenge, Proof signed with the gateway's Ed25519
key, Welcome, heartbeats, a snapshot when asked) and reconnect the way the
product's `BridgeClient.run` does: full jitter from MIN_S to MAX_S (the edge's
`reconnect_min_s` and `reconnect_max_s`), a fresh back-off after a bridge that
opened, no retry after a fatal close; connect and close time out after the
edge's `connect_timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import hashlib
import json
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop_bridge import (
    CloseCode,
    Closed,
    EdgeConnection,
    Opened,
    SnapshotRequested,
    after_restart,
    full_jitter,
)
from bellhop_bridge.connection import State
from bellhop_bridge.frames import MAX_FRAME_BYTES
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

BRIDGE_PATH: Final = "/v1/bridge"
SOFTWARE_VERSION: Final = "bellhop-bench relay-capacity"
KEY_CONTEXT: Final = b"bellhop-bench-relay-capacity\x00"


def gateway_key(index: int) -> Ed25519PrivateKey:
    """Gateway `index`'s enrolment key, the same in every process that derives it."""
    seed = hashlib.sha256(KEY_CONTEXT + index.to_bytes(4, "big")).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one (children inherit it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_kib(pid: int | None = None) -> int:
    """VmRSS of a process, in KiB, from /proc (this process by default)."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc status")


def cpu_s(pid: int | None = None) -> float:
    """User and system CPU time of a process so far, in seconds, from /proc."""
    fields = Path(f"/proc/{pid or os.getpid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def install_uvloop() -> None:
    # The relay runs under uvicorn's "auto" loop, which is uvloop when it is
    # installed; the floor and the load run on the same loop.
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()


# --- the command channel ---------------------------------------------------------------


def answer(body: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


async def commands(handle: Callable[[dict[str, Any]], Awaitable[bool]]) -> None:
    """Serve commands from stdin until `handle` returns False or stdin closes."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        if not await handle(json.loads(line)):
            return


# --- gateways --------------------------------------------------------------------------


@dataclass(slots=True)
class Gateway:
    index: int
    gateway_id: str
    key: Ed25519PrivateKey
    opened_at: float | None = None  # time.monotonic() of the open bridge's Welcome
    first_done: asyncio.Event = field(default_factory=asyncio.Event)
    slot: asyncio.Semaphore | None = None  # held during the first attempt only

    def release_slot(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None


class Fleet:
    """Gateways of this process; each keeps its bridge up as the product's client does."""

    def __init__(
        self,
        url: str,
        hotel_id: str,
        gateways: list[Gateway],
        concurrency: int,
        backoff: tuple[float, float],
    ) -> None:
        from bellhop_edge.config import BridgeConfig

        self.url = url
        self.backoff = backoff
        self.hotel_id = hotel_id
        self.gateways = gateways
        self.started = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.slots = asyncio.Semaphore(concurrency)
        self.heartbeats = 0  # sent by this process's gateways
        # (time.monotonic(), gateway index, what happened, when that connection attempt
        # began): opens, closes, failed connects.
        self.log: list[tuple[float, int, str, float]] = []
        self.config = BridgeConfig()  # the edge's default connect timeout

    async def open(self, count: int) -> dict[str, Any]:
        """Start gateways up to `count`; answer once each has opened or failed once."""
        fresh = self.gateways[self.started : count]
        self.started = max(self.started, count)
        for gateway in fresh:
            await self.slots.acquire()  # a bounded number of first handshakes in flight
            gateway.slot = self.slots
            self.tasks.append(asyncio.create_task(self.run(gateway)))
        await asyncio.gather(*(g.first_done.wait() for g in fresh))
        return {"open": self.open_count(), "started": self.started}

    def open_count(self) -> int:
        return sum(g.opened_at is not None for g in self.gateways)

    def status(self, since: float) -> dict[str, Any]:
        times = [g.opened_at for g in self.gateways[: self.started] if g.opened_at is not None]
        recent = [t for t in times if t > since]
        return {
            "open": len(times),
            "open_since": len(recent),
            "newest": max(recent, default=None),
            "heartbeats": self.heartbeats,
        }

    async def run(self, gateway: Gateway) -> None:
        """`BridgeClient.run` without the outbox: connect, hold, reconnect with full jitter."""
        config = self.config
        delays = full_jitter(*self.backoff)
        while True:
            opened, closed = False, None
            attempt = time.monotonic()
            try:
                async with connect(
                    self.url,
                    open_timeout=config.connect_timeout_s,
                    close_timeout=config.connect_timeout_s,
                    ping_interval=None,
                    max_size=MAX_FRAME_BYTES,
                    compression=None,
                    proxy=None,
                    user_agent_header=SOFTWARE_VERSION,
                ) as ws:
                    opened, closed = await self.session(ws, gateway, attempt)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                self.note(gateway, "connect:" + failure(exc), attempt)
            except Exception as exc:  # the product's client would die here; count it instead
                self.note(gateway, "error:" + type(exc).__name__, attempt)
            gateway.opened_at = None
            gateway.release_slot()
            gateway.first_done.set()
            if closed is not None:
                stage = "open" if opened else "handshake"
                self.note(gateway, f"close_{stage}:{closed.code.value}", attempt)
                if closed.fatal:
                    return
            if opened:
                restarting = closed is not None and closed.code is CloseCode.SHUTTING_DOWN
                delays = after_restart(*self.backoff) if restarting else full_jitter(*self.backoff)
            await asyncio.sleep(next(delays))

    async def session(
        self, ws: ClientConnection, gateway: Gateway, attempt: float
    ) -> tuple[bool, Closed | None]:
        loop = asyncio.get_running_loop()
        conn = EdgeConnection(
            gateway_id=gateway.gateway_id,
            hotel_id=self.hotel_id,
            software_version=SOFTWARE_VERSION,
            sign=gateway.key.sign,
            now=loop.time(),
        )
        opened, closed = False, None
        try:
            await flush(ws, conn)
            while not conn.closed:
                try:
                    async with asyncio.timeout_at(conn.next_deadline()):
                        data = await ws.recv()
                except TimeoutError:
                    was_open = conn.state is State.OPEN
                    conn.tick(loop.time())
                    # What a tick of an open bridge sends is its heartbeat.
                    self.heartbeats += was_open and conn.state is State.OPEN
                except ConnectionClosed as exc:
                    conn.connection_lost(f"the connection closed ({exc.rcvd or 'no close frame'})")
                else:
                    conn.receive_data(
                        data if isinstance(data, bytes) else data.encode(), loop.time()
                    )
                for event in conn.events_received():
                    if isinstance(event, Opened):
                        opened = True
                        gateway.opened_at = time.monotonic()
                        self.note(gateway, "open", attempt)
                        gateway.release_slot()
                        gateway.first_done.set()
                    elif isinstance(event, SnapshotRequested):
                        # A gateway without devices: the relay's first-connection snapshot
                        # of it is empty (all gateways share one hotel here).
                        conn.send_snapshot(bridge_pb2.Snapshot(), loop.time())
                    elif isinstance(event, Closed):
                        closed = event
                with contextlib.suppress(ConnectionClosed):
                    await flush(ws, conn)
        finally:
            gateway.opened_at = None
        return opened, closed

    def note(self, gateway: Gateway, what: str, attempt: float) -> None:
        self.log.append((time.monotonic(), gateway.index, what, attempt))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def flush(ws: ClientConnection, conn: EdgeConnection) -> None:
    for data in conn.data_to_send():
        await ws.send(data)


def failure(exc: BaseException) -> str:
    """A short name for why a connection attempt failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"  # nothing listens on the port: the relay is down
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno).lower().replace(" ", "_")
    return type(exc).__name__


async def gateways_role(args: list[str]) -> None:
    port, path, start, stop, concurrency, min_s, max_s = args
    spec = json.loads(await asyncio.to_thread(Path(path).read_text))
    gateways = [
        Gateway(index, gateway_id, gateway_key(index))
        for index, gateway_id in spec["gateways"][int(start) : int(stop)]
    ]
    fleet = Fleet(
        f"ws://127.0.0.1:{port}{BRIDGE_PATH}",
        spec["hotel_id"],
        gateways,
        int(concurrency),
        (float(min_s), float(max_s)),
    )

    lag = LoopLag()

    async def handle(command: dict[str, Any]) -> bool:
        op = command["op"]
        if op == "open":
            answer(await fleet.open(command["count"]))
        elif op == "status":
            answer(fleet.status(command.get("since", 0.0)))
        elif op == "log":
            answer({"log": fleet.log, "lag_s": lag.take(), "cpu_s": cpu_s()})
        elif op == "quit":
            await fleet.close()
            answer({"quit": True})
            return False
        return True

    try:
        await commands(handle)
    finally:
        await fleet.close()


# --- the floor: bare websockets --------------------------------------------------------


async def bare_clients_role(args: list[str]) -> None:
    """Idle connections that do nothing but stay open."""
    port, start, stop, concurrency = (int(a) for a in args)
    url = f"ws://127.0.0.1:{port}{BRIDGE_PATH}"
    slots = asyncio.Semaphore(concurrency)
    held: list[ClientConnection] = []
    wanted = stop - start
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with slots:
            try:
                held.append(
                    await connect(
                        url, open_timeout=10, ping_interval=None, compression=None, proxy=None
                    )
                )
            except (OSError, TimeoutError, InvalidHandshake):
                failed += 1

    async def handle(command: dict[str, Any]) -> bool:
        if command["op"] == "open":
            count = min(command["count"], wanted)
            await asyncio.gather(*(one() for _ in range(count - len(held) - failed)))
            answer({"open": len(held), "failed": failed})
            return True
        if command["op"] == "quit":
            await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
            answer({"quit": True})
            return False
        return True

    await commands(handle)


async def measure_command(command: dict[str, Any]) -> dict[str, Any] | None:
    """The servers' shared commands: RSS (after a collection if asked), heap traces."""
    if command["op"] == "rss":
        if command.get("gc"):
            gc.collect()
        return {"rss_kib": rss_kib(), "pid": os.getpid()}
    if command["op"] == "trace":
        return {"trace": trace_step(command.get("top", 25))}
    return None


_last_snapshot: list[tracemalloc.Snapshot] = []


def trace_step(top: int) -> list[list[Any]]:
    """Heap growth by allocation site since the previous call (nothing the first time)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    rows: list[list[Any]] = []
    if _last_snapshot:
        stats = snapshot.compare_to(_last_snapshot[-1], "lineno")
        for stat in stats[:top]:
            frame = stat.traceback[0]
            rows.append([f"{frame.filename}:{frame.lineno}", stat.size_diff, stat.count_diff])
    _last_snapshot[:] = [snapshot]
    return rows


async def bare_server_role(args: list[str]) -> None:
    """websockets' own server and nothing else: the floor under the relay's bridges."""

    async def idle(ws: ServerConnection) -> None:
        # A pending read, as the relay's handler keeps one; nothing is ever sent.
        async for _ in ws:
            pass

    async with serve(
        idle,
        "127.0.0.1",
        int(args[0]),
        max_size=MAX_FRAME_BYTES,
        compression=None,
        ping_interval=None,
        server_header=None,
    ):

        async def handle(command: dict[str, Any]) -> bool:
            reply = await measure_command(command)
            answer(reply if reply is not None else {"quit": True})
            return reply is not None

        answer({"listening": True, "pid": os.getpid()})
        await commands(handle)


async def endpoint_server_role(args: list[str]) -> None:
    """The relay's bridge endpoint alone: `Relay` and `BridgeEndpoint`, no HTTP app.

    Stops on SIGTERM as the relay does (the endpoint closes every bridge, telling
    each gateway it is shutting down). With an argument, the endpoint's work is
    profiled (cProfile, from listening to exit) into that file.
    """
    import logging
    import signal

    from bellhop_cloud.bridge.endpoint import BridgeEndpoint
    from bellhop_cloud.config import load_config
    from bellhop_cloud.relay import Relay

    # The relay's log lines (opens, closes by code), as `bellhop cloud run` writes them.
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    config = load_config()
    relay = await Relay.open(config)
    profile = cProfile.Profile() if args else None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        endpoint = BridgeEndpoint(relay)
        assert config.bridge_port is not None
        # As the relay's lifespan does before it serves.
        gc.freeze()
        async with endpoint.serving(config.bridge_host or config.host, config.bridge_port):

            async def handle(command: dict[str, Any]) -> bool:
                reply = await measure_command(command)
                answer(reply if reply is not None else {"quit": True})
                return reply is not None

            if profile is not None:
                profile.enable()
            answer({"listening": True, "pid": os.getpid()})
            served = asyncio.create_task(commands(handle))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([served, stopping], return_when=asyncio.FIRST_COMPLETED)
            served.cancel()
            stopping.cancel()
    finally:
        await relay.close()
        if profile is not None:
            profile.disable()
            profile.dump_stats(args[0])


class LoopLag:
    """The worst lateness of this process's event loop: a starved load process would
    time out handshakes the relay finished in time."""

    def __init__(self, every_s: float = 0.1) -> None:
        self.every_s = every_s
        self.worst = 0.0
        self.task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.every_s)
            self.worst = max(self.worst, time.monotonic() - before - self.every_s)

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return round(worst, 3)


ROLES: Final[dict[str, Callable[[list[str]], Coroutine[Any, Any, None]]]] = {
    "gateways": gateways_role,
    "bare-clients": bare_clients_role,
    "bare-server": bare_server_role,
    "endpoint-server": endpoint_server_role,
}


def main() -> None:
    role, *args = sys.argv[1:]
    raise_fd_limit()
    if os.environ.get("BELLHOP_BENCH_TRACEMALLOC"):
        tracemalloc.start(1)
    install_uvloop()
    asyncio.run(ROLES[role](args))


if __name__ == "__main__":
    main()
