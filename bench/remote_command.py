"""P3: remote command round trip: REST -> relay -> bridge -> gateway -> MQTT -> device -> back.

A manager's `POST /v1/hotels/{hotel}/devices/{device}/commands` with `mode: "wait"`,
answered with the device's result, against the same gateway and devices that staff
reach on the LAN (gRPC `SendCommand`, as bench/lan_command.py), in the same run:

- one node: one relay (`bellhop cloud run`, its embedded defaults: SQLite, the
  in-process bus) holding the gateway's bridge and taking the REST call;
- one node on the scale-out store (`remote_pg`): one relay alone on a PostgreSQL
  database and a Redis (`redis-server`) of its own, its settings otherwise those of each
  of the two nodes below: what differs from the two-node path is the second node alone;
- two nodes: two relays on one PostgreSQL database (bench/_pg.py's throwaway one) and
  Redis (`bus_backend = "redis"`; login throttling stays in memory, it is not on the
  path); the gateway's bridge is held by node A, the REST call goes to node B, so the
  request crosses to A as a nudge and the result comes back to B on the results channel.

Every relay, each hotel's gateway (`bellhop edge run`, enrolled through the relay that
holds its bridge), each hotel's Mosquitto and the simulated lights (`bellhop_devices.sim`,
one MQTT connection each) run as their own processes (bench/_remote_sites.py); this
process is the manager's app (a minimal keep-alive HTTP/1.1 client, as
bench/cloud_api.py's) and the staff app (grpc.aio) (bench/_remote_measure.py). One
command at a time, round-robin over a hotel's four lights (`set_light`, each command
changing the light, so every command also sends its result and a state report up the
bridge's outbox, which the relay applies too). After a warm-up the paths take turns in
blocks of 50, so that load from anything else on the machine falls on all of them
alike; between turns the processes are let finish what a turn left (the relays applying
its last outbox batches). Also measured in the same turns: the LAN path of the two-node
hotel's gateway (`lan2_p50_ms`: the two gateways alike) and the relay's bare REST round
trip (`GET /healthz` on the one-node relay, `rest_floor_p50_ms`); and the CPU time each
process spent per command of each path (`cpu_ms_per_command`).

    .venv/bin/python bench/remote_command.py [--quick] [--commands N] [--trace]
        [--profile DIR]

`--trace` runs the relays and gateways through this file with marks at each step of a
command and prints where the time goes, step by step, with each relay's trips to its
database (bench/_remote_trace.py; the marks cost time too: quote the figures of a run
without it). `--profile DIR` runs them through this file under cProfile and prints each
one's busiest functions (the statistics stay in DIR, one file per process).

Prints one JSON object as its last line: remote_p50_ms, remote_p99_ms, lan_p50_ms,
ratio (remote p50 / LAN p50), remote_2node_p50_ms, ratio_2node (two-node p50 /
one-node p50, the one node on SQLite), remote_pg_p50_ms, remote_pg_p99_ms,
ratio_2node_same_store (two-node p50 / the one node on PostgreSQL and Redis), the other
paths' figures, and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
import grpc
from _load import broker, percentile, report
from _pg import create_database, drop_database
from _procs import pg_backends
from _remote_measure import (
    CommandPath,
    CpuMeter,
    Http,
    Measured,
    Sizes,
    health_path,
    lan_path,
    measure,
    remote_path,
)
from _remote_sites import (
    START_TIMEOUT_S,
    RedisServer,
    Relay,
    Site,
    broker_pids,
    enrol_gateway,
    pid_of,
    run_devices,
    stop,
    stop_devices,
    tenant,
    until_online,
    until_visible,
)
from _remote_trace import profiled, serve, traced
from bellhop.lan.v1 import lan_pb2_grpc
from bellhop_edge.localbroker import MosquittoBroker

from tests.support.mosquitto import wait_for_port

TARGET_RATIO: Final = 2.5  # remote p50 <= 2.5 x LAN p50
TARGET_RATIO_2NODE: Final = 1.5  # two-node p50 <= 1.5 x one-node p50
REDIS_URL: Final = os.environ.get("BELLHOP_BENCH_REDIS", "redis://127.0.0.1:6379/0")

BLOCK: Final = 50  # commands per path per turn
WARM_UP: Final = 200  # commands per path before measuring (--quick: 50)
IDLE_S: Final = 2.0  # the processes' CPU time with no command, before the warm-up


def note(began: float, what: str) -> None:
    print(f"  {time.monotonic() - began:6.1f} s  {what}", file=sys.stderr)


async def run(sizes: Sizes, trace: Path | None, profile: Path | None) -> Measured:
    # One database for the two nodes, one for the node alone on PostgreSQL.
    db_name, db_url = await create_database("bellhop_bench_remote")
    pg_name, pg_url = await create_database("bellhop_bench_remote_pg")
    try:
        with contextlib.ExitStack() as stack:
            # Torn down in reverse: the devices, the gateways, the relays, the brokers.
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bellhop-rc-")))
            # A broker per hotel, as on site (and a device's account is its id).
            brokers = tuple(stack.enter_context(broker()) for _ in range(3))
            measured = await measured_run(
                stack, workdir, (db_url, pg_url), brokers, sizes, trace, profile
            )
            stopping = time.monotonic()
        note(stopping, "every process stopped")
        return measured
    finally:
        await drop_database(pg_name)
        await drop_database(db_name)


async def measured_run(
    stack: contextlib.ExitStack,
    workdir: Path,
    databases: tuple[str, str],
    brokers: tuple[MosquittoBroker, ...],
    sizes: Sizes,
    trace: Path | None,
    profile: Path | None,
) -> Measured:
    db_url, pg_url = databases
    solo_db = f"sqlite:///{workdir / 'solo' / 'relay.db'}"
    solo = Relay("relay-solo", workdir / "solo", {"database_url": solo_db}, trace)
    shared = {"database_url": db_url, "bus_backend": "redis", "redis_url": REDIS_URL}
    node_a = Relay("relay-a", workdir / "pair", {**shared, "node_id": "relay-a"}, trace)
    node_b = Relay("relay-b", workdir / "pair", {**shared, "node_id": "relay-b"}, trace)
    # A node's settings, with no second node: a database of its own, and a Redis of its
    # own too, since Redis's channels are one set for the whole server (the pair's
    # messages would reach it, and its messages the pair).
    redis = RedisServer(workdir / "pg")
    alone = Relay("relay-pg", workdir / "pg", {**shared, "node_id": "relay-pg"}, trace)
    alone.settings.update(database_url=pg_url, redis_url=redis.url)
    relays = (solo, alone, node_a, node_b)
    for relay in relays:
        relay.profile = profile
        relay.workdir.mkdir(exist_ok=True)
    stack.callback(stop, redis)  # after the relays
    redis.start()
    stack.callback(stop, *relays)
    began = time.monotonic()

    async def pair() -> None:
        await node_a.ready()
        node_b.start()  # after A: the schema is migrated and the signing key written
        await node_b.ready()

    for relay in (solo, alone, node_a):
        relay.start()
    await asyncio.gather(solo.ready(), alone.ready(), pair())
    note(began, "relays ready")

    owners = await asyncio.gather(
        tenant(solo.base_url), tenant(alone.base_url), tenant(node_b.base_url)
    )
    one = Site("one-node", owners[0], workdir / "site-1", brokers[0])
    pg = Site("one-node-pg", owners[1], workdir / "site-pg", brokers[2])
    two = Site("two-node", owners[2], workdir / "site-2", brokers[1])
    sites = (one, pg, two)
    stack.callback(stop, *sites)

    async def start_site(site: Site, holder: Relay) -> None:
        site.trace, site.profile = trace, profile
        site.workdir.mkdir()
        config = site.configure()
        await enrol_gateway(holder, site.hotel, site.data_dir)  # its bridge goes to `holder`
        site.start(config)

    await asyncio.gather(start_site(one, solo), start_site(pg, alone), start_site(two, node_a))
    specs = [spec for site in sites for spec in site.device_specs()]
    devices = multiprocessing.get_context("spawn").Process(
        target=run_devices, args=(specs,), daemon=True
    )
    devices.start()
    stack.callback(stop_devices, devices)
    for site in sites:
        wait_for_port("127.0.0.1", site.api_port, timeout=START_TIMEOUT_S)
    visible_s = await asyncio.gather(
        until_visible(solo, one), until_visible(alone, pg), until_visible(node_b, two)
    )
    note(began, f"gateways and lights visible in the relays ({max(visible_s):.1f} s)")

    rest_one = Http(solo.http_port, one.hotel.headers)
    rest_pg = Http(alone.http_port, pg.hotel.headers)
    rest_two = Http(node_b.http_port, two.hotel.headers)  # node B; node A holds the bridge
    health = Http(solo.http_port, {})
    run_id = secrets.token_hex(3)  # command ids of this run
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{one.api_port}") as lan_one,
            grpc.aio.insecure_channel(f"127.0.0.1:{pg.api_port}") as lan_pg,
            grpc.aio.insecure_channel(f"127.0.0.1:{two.api_port}") as lan_two,
        ):
            stub_one = lan_pb2_grpc.LanServiceStub(lan_one)
            stub_pg = lan_pb2_grpc.LanServiceStub(lan_pg)
            stub_two = lan_pb2_grpc.LanServiceStub(lan_two)
            await asyncio.gather(
                until_online(stub_one, one), until_online(stub_pg, pg), until_online(stub_two, two)
            )
            note(began, "every light online on its gateway")
            paths: dict[str, CommandPath] = {
                "lan": lan_path(stub_one, one, f"l1{run_id}"),
                "remote": remote_path(rest_one, one, f"r1{run_id}"),
                "remote_pg": remote_path(rest_pg, pg, f"rp{run_id}"),
                "remote_2node": remote_path(rest_two, two, f"r2{run_id}"),
                "lan2": lan_path(stub_two, two, f"l2{run_id}"),
                "rest_floor": health_path(health),
            }
            meter = CpuMeter(
                {
                    "client": [os.getpid()],
                    **{r.name: [pid_of(r.process)] for r in relays},
                    **{f"gateway-{s.label}": [pid_of(s.process)] for s in sites},
                    "devices": [devices.pid or 0],
                    "brokers": broker_pids(brokers),
                    "postgres": await pg_backends(db_url),  # the two nodes' database
                    "postgres-pg": await pg_backends(pg_url),  # the node alone's
                }
            )
            before = meter.sample()
            await asyncio.sleep(IDLE_S)  # what each process costs with no command at all
            after = meter.sample()
            measured = await measure(paths, sizes, meter)
            note(began, f"measured ({measured.seconds:.1f} s after the warm-up)")
            measured.idle_cpu = {p: (after[p] - before[p]) / IDLE_S * 100 for p in after}
    finally:
        for client in (rest_one, rest_pg, rest_two, health):
            await client.close()
    for relay in relays:
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
    alone = p("remote_pg", 50)
    cpu = {
        name: {
            part: round(seconds * 1000 / len(samples[name]), 3)
            for part, seconds in measured.cpu[name].items()
            if seconds > 0
        }
        for name in ("remote", "remote_pg", "remote_2node", "lan")
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
        "ratio_2node": round(two / remote, 3),  # two nodes vs one node on SQLite
        "remote_pg_p50_ms": alone,
        "remote_pg_p99_ms": p("remote_pg", 99),
        "ratio_2node_same_store": round(two / alone, 3),  # vs one node on PostgreSQL
        "lan2_p50_ms": p("lan2", 50),
        "rest_floor_p50_ms": p("rest_floor", 50),
        "cpu_ms_per_command": cpu,
        "idle_cpu_pct": idle,
        "measured_s": round(measured.seconds, 1),
        "target_ratio": TARGET_RATIO,
        "target_ratio_2node": TARGET_RATIO_2NODE,
        "cpus": os.cpu_count(),
    }


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
