"""P3's --trace and --profile (bench/remote_command.py): marks at each step of a command
in every relay and gateway, and where the time goes, step by step.

With --trace, each relay and gateway runs through remote_command.py (`--serve
relay|gateway`), which wraps the functions a remote command passes through, in the relay
and on the edge, to write the time of each entry (`name>`) and exit (`name<`) to a file
of its own. All processes read CLOCK_MONOTONIC (time.monotonic_ns), so their marks line
up with the client's; commands go one at a time, so a mark between a command's send and
its answer belongs to it (or is work running beside it: the outbox's batches, sweeps).
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from _remote_measure import Measured
from _remote_sites import PROFILE_ENV, TRACE_ENV


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
    from bellhop_cloud.bridge.batches import Applier
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
    wrap(marks, remote, "queue_commands", "queue_commands")
    wrap(marks, remote, "queue_alone", "queue_commands")  # its one statement, on PostgreSQL
    wrap(marks, sync, "results", "store_result")
    for attr in ("queue", "nudge", "wait", "_answered", "_nudged", "_deliver", "received"):
        wrap(marks, Downlink, attr, f"downlink.{attr.lstrip('_')}")
    for attr in ("finished", "_wake", "_result_heard"):
        wrap(marks, Downlink, attr, f"downlink.{attr.lstrip('_')}")
    wrap(marks, BridgeEndpoint, "_send_down", "bridge.send_down")
    wrap(marks, Applier, "batch", "bridge.apply_batch")  # beside the reader (batches.py)
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


def process_mark(names: dict[str, str], label: str) -> str:
    """`HOLD:mark` as the mark of the process playing that part (`relay-a:mark`)."""
    role, _, rest = label.partition(":")
    return f"{names.get(role, role)}:{rest}"


def traced(measured: Measured, trace: Path) -> dict[str, Any]:
    """Where the time of each path goes, from the marks of every process (--trace)."""
    marks = [m for path in trace.glob("*.marks") for m in read_marks(path, path.stem)]
    out: dict[str, Any] = {}
    # Per path: its steps, the relays playing each part, the gateway of its hotel.
    cases: tuple[tuple[str, Sequence[tuple[str, str]], dict[str, str], str], ...] = (
        ("remote", REMOTE_STEPS, {"REST": "relay-solo", "HOLD": "relay-solo"}, "one-node"),
        ("remote_pg", REMOTE_STEPS, {"REST": "relay-pg", "HOLD": "relay-pg"}, "one-node-pg"),
        ("remote_2node", REMOTE_STEPS, {"REST": "relay-b", "HOLD": "relay-a"}, "two-node"),
        ("lan", LAN_STEPS, {"HOLD": "relay-solo"}, "one-node"),
    )
    for name, steps, nodes, site in cases:
        names = {**nodes, "GW": f"gateway-{site}"}
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
