"""Live events (P8): SSE clients following one hotel on one relay, events at a steady rate.

One relay process serves `--clients` Server-Sent Events streams (1,000; `--quick`: 200)
of `GET /v1/hotels/{hotel_id}/events`, all following the same hotel, while events are
published into it at a steady rate (`--rate`, 20 events/s, `--batch` events per call).
The relay is this file run as `--serve relay CONFIG`: the app and the uvicorn settings
of `bellhop cloud run` (`create_app`, `server.uvicorn_config`; SQLite, the in-process
bus, the default live-event settings; `--bus redis` for the Redis log), plus a reader
of JSON commands on stdin that publishes through `relay.live.publish(hotel_id,
[LiveEvent(...)])` as the bridge does after a batch: `state` events of the hotel's
devices without a room, so the relay looks the device's room up as it does for the
bridge's. Each event's `data` carries `seq` and `sent_ns` (CLOCK_MONOTONIC, shared by
the processes of the machine), taken just before the publish call.

The clients live in this process: raw asyncio connections (uvloop) that send the
request with an access token and `Accept: text/event-stream` and scan what arrives
for `seq` and `sent_ns`; the receipt time is taken once per read from the socket.
They belong to MANAGERS accounts (the owner and viewers granted the whole hotel),
spread evenly. All streams are open (their `: open` comment read: subscribed) before
the first event; the first WARM_UP_S of events are left out of the figures. Every
client must receive every event once, in order: `lost`, `duplicated` and `ended`
(streams the server ended or closed) say otherwise.

The floor, in the same run: a bare sse-starlette app (Starlette, one route, an
`asyncio.Queue` per client, `EventSourceResponse` with its defaults but the relay's
separator) in its own process under the same uvicorn settings, broadcasting the same
events (the same JSON body as the relay's, built once per event) at the same rate
to the same number of clients, read by the same clients. Floor and relay phases
alternate, `--rounds` times (2; `--quick`: 1).

The publisher awaits each call before the next, as the bridge awaits `tell` for each
batch of a gateway: a call that takes long delays the ones after it.

- `p99_delivery_ms`: from the publish call to the client's read, over every
  delivery of the relay phases; `floor_p99_delivery_ms` the same for the floor;
  `ratio` = p99 / floor p99. `p99_from_schedule_ms`: from when the event was due
  on the steady schedule, which also counts calls begun late behind slow ones
  (`ratio_from_schedule` against the floor's): when the relay cannot keep the rate,
  this is the figure that shows it, not `ratio`.
- `events_per_s_delivered`: deliveries across all clients per second, from the
  first publish to the last receipt (offered: clients x rate); `published_per_s`
  the events the publisher got through per second (offered: rate).
- `rss_mib`: the relay process's peak RSS (VmHWM, /proc) with every stream open and
  events flowing; `rss_mib_idle` before the first stream; `floor_rss_mib` likewise.
- `cpu_us_per_delivery`: CPU time per delivery of the server (relay or floor) and
  of this process (the clients), over the phases: the cost a quieter machine would
  not change, where latencies move with whatever else shares the cores.
- `publish_call_ms_p50`: the median time a publish call took (the worst phase's);
  `publish_late_ms_max`: how far the publisher fell behind its schedule;
  `loop_lag_ms_max`: the server's worst event-loop lateness.

    .venv/bin/python bench/sse_fanout.py [--quick] [--clients N] [--rate R] [--seconds S]
        [--batch B] [--rounds K] [--bus memory|redis] [--set KEY=VALUE] [--profile DIR]

To find where the relay's time goes: `--set KEY=VALUE` changes a relay setting
(e.g. `events_recheck_s=60`), `--profile DIR` runs cProfile in the relay and the
floor during each publishing stretch (DIR/relay-<round>.prof, floor-<round>.prof).

Prints one JSON object as its last line: clients, events_per_s_delivered,
p99_delivery_ms, rss_mib, floor_p99_delivery_ms, ratio, and the details.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _load import percentile, report
from _relay_load import cpu_s, raise_fd_limit
from _sse_clients import Tally, close_clients, open_clients
from _sse_serve import HOTEL_DEVICES, HOTEL_ROOMS, REPLY_TIMEOUT_S, Server, device_id, serve_role

TARGET_P99_MS: Final = 250.0
TARGET_RATIO: Final = 2.0
MANAGERS: Final = 8  # the owner and seven viewers granted the whole hotel
WARM_UP_S: Final = 1.0
DRAIN_S: Final = 10.0  # after the last publish, for the last deliveries


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hwm_kib(pid: int) -> int:
    """VmHWM (peak RSS) of a process, in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc status")


# --- set-up: accounts, the hotel, its devices ------------------------------------------------


@dataclass
class Hotel:
    hotel_id: str
    emails: list[str]
    password: str


def relay_config_file(
    workdir: Path, port: int, bus: str, redis_url: str, settings: dict[str, Any]
) -> Path:
    values: dict[str, Any] = {
        "database_url": f"sqlite:///{workdir / 'relay.db'}",
        "signing_key_path": str(workdir / "signing-key.pem"),
        "port": port,
        "bridge_port": free_port(),
        # Only the benchmark's own sign-ups and logins hash passwords, and from one address.
        "password_time_cost": 1,
        "password_memory_kib": 8,
        "password_parallelism": 1,
        "register_address_limit": 100,
        "login_address_limit": 1000,
        # A thousand streams of MANAGERS sessions: more per session than a person holds.
        "events_streams_per_session": 1000,
    }
    if bus == "redis":
        values |= {"bus_backend": "redis", "redis_url": redis_url}
    values |= settings
    path = workdir / "relay.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


async def seed(config_path: Path) -> Hotel:
    """The owner, an organisation, a hotel of HOTEL_DEVICES devices, viewers granted it,
    through the relay's REST API in this process (the tests' client of it)."""
    import httpx
    from bellhop_cloud.app import create_app
    from bellhop_cloud.config import load_config
    from bellhop_cloud.relay import Relay

    from tests.cloud.support import PASSWORD, Api

    config = load_config(config_path)
    relay = await Relay.open(config)
    try:
        transport = httpx.ASGITransport(app=create_app(config, relay=relay))
        async with httpx.AsyncClient(transport=transport, base_url="http://relay.test") as http:
            api = Api(http, relay, "sse-fanout")
            owner = await api.account("owner")
            org_id = await api.org(owner, "Bench Hotels")
            hotel_id = await api.hotel(owner, org_id, "Bench Hotel")
            await api.seed_devices(hotel_id, HOTEL_DEVICES, rooms=HOTEL_ROOMS)
            emails = [owner.email]
            for n in range(1, MANAGERS):
                viewer = await api.account(f"manager{n}")
                await api.grant(owner, org_id, viewer, "viewer", hotel_id=hotel_id)
                emails.append(viewer.email)
    finally:
        await relay.close()
    return Hotel(hotel_id, emails, PASSWORD)


async def login_all(port: int, hotel: Hotel) -> list[str | None]:
    """Fresh access tokens (a stream ends at its token's expiry)."""
    import httpx

    tokens: list[str | None] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        for email in hotel.emails:
            login = {"email": email, "password": hotel.password}
            response = await http.post("/v1/auth/login", json=login)
            if response.status_code != 200:
                raise RuntimeError(f"login: {response.status_code} {response.text}")
            tokens.append(str(response.json()["access_token"]))
    return tokens


# --- one phase ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """Every phase of one side (relay or floor), pooled."""

    latencies_ns: array[int] = field(default_factory=lambda: array("q"))  # from the call
    due_latencies_ns: array[int] = field(default_factory=lambda: array("q"))  # from the due time
    published_s: float = 0.0  # from the first call to the last
    published: int = 0
    deliveries: int = 0  # after the warm-up: the latencies
    total: int = 0  # every delivery: the rate
    seconds: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    lost: int = 0
    duplicated: int = 0
    ended: list[str] = field(default_factory=list)
    connect_s: list[float] = field(default_factory=list)
    late_ms_max: float = 0.0
    call_ms_p50: list[float] = field(default_factory=list)
    loop_lag_ms_max: float = 0.0
    peak_kib: int = 0

    def p(self, pct: float, *, from_due: bool = False) -> float:
        values = self.due_latencies_ns if from_due else self.latencies_ns
        return round(percentile(values, pct) / 1e6, 1)

    def per_delivery_us(self, seconds: float) -> float:
        return round(seconds * 1e6 / self.deliveries, 2) if self.deliveries else 0.0


async def phase(
    server: Server,
    hotel: Hotel,
    tokens: list[str | None],
    args: argparse.Namespace,
    round_no: int,
    into: Outcome,
) -> None:
    events = round(args.rate * args.seconds)
    warm_up = round(args.rate * WARM_UP_S)
    tally = Tally(skip_below=warm_up)
    path = f"/v1/hotels/{hotel.hotel_id}/events"
    began = time.perf_counter()
    clients = await open_clients(server.port, path, tokens, args.clients, tally)
    try:
        connect_s = time.perf_counter() - began
        status = await server.ask(op="status")
        if status["subscribers"] != args.clients:
            raise RuntimeError(f"{server.name}: {status['subscribers']} subscribers")
        cpu_before = cpu_s(server.pid), cpu_s()
        published = await server.ask(
            timeout=REPLY_TIMEOUT_S + args.seconds,
            op="publish",
            hotel_id=hotel.hotel_id,
            events=events,
            rate=args.rate,
            batch=args.batch,
            round=round_no,
        )
        deadline = time.monotonic() + DRAIN_S
        while any(c.received < events and c.ended is None for c in clients):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        cpu_after = cpu_s(server.pid), cpu_s()
        into.peak_kib = max(into.peak_kib, hwm_kib(server.pid))
        ended = [c.ended for c in clients if c.ended is not None]
    finally:
        close_clients(clients)
    await asyncio.gather(*(asyncio.wait_for(c.closed, 10) for c in clients))
    deadline = time.monotonic() + 30
    while (await server.ask(op="status"))["subscribers"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: streams still open after their clients left")
        await asyncio.sleep(0.1)

    seconds = (tally.last_ns - published["first_ns"]) / 1e9
    lost = sum(max(0, events - c.received) for c in clients)
    into.latencies_ns.extend(tally.latencies_ns)
    start_ns, interval_ns, batch = published["start_ns"], published["interval_ns"], args.batch
    into.due_latencies_ns.extend(
        array(
            "q",
            (
                at - (start_ns + seq // batch * interval_ns)
                for seq, at in zip(tally.seqs, tally.receipts_ns, strict=True)
            ),
        )
    )
    into.published += events
    into.published_s += (published["last_ns"] - published["first_ns"] + interval_ns) / 1e9
    into.deliveries += tally.deliveries
    into.total += tally.total
    into.seconds += seconds
    into.server_cpu_s += cpu_after[0] - cpu_before[0]
    into.client_cpu_s += cpu_after[1] - cpu_before[1]
    into.lost += lost
    into.duplicated += tally.duplicated
    into.ended += ended
    into.connect_s.append(round(connect_s, 2))
    into.late_ms_max = max(into.late_ms_max, published["late_ms_max"])
    into.call_ms_p50.append(published["call_ms_p50"])
    into.loop_lag_ms_max = max(into.loop_lag_ms_max, published["loop_lag_ms_max"])
    ordered = sorted(tally.latencies_ns)
    published_s = (published["last_ns"] - published["first_ns"]) / 1e9
    print(
        f"round {round_no} {server.name:5s}: {events} events published in {published_s:.1f} s,"
        f" {tally.total:,} deliveries in {seconds:.1f} s"
        f" ({tally.total / seconds:,.0f}/s), p50 {percentile(ordered, 50) / 1e6:.1f} ms,"
        f" p99 {percentile(ordered, 99) / 1e6:.1f} ms, max {percentile(ordered, 100) / 1e6:.1f}"
        f" ms; server CPU {cpu_after[0] - cpu_before[0]:.1f} s, clients' CPU"
        f" {cpu_after[1] - cpu_before[1]:.1f} s; publish call p50 {published['call_ms_p50']} ms,"
        f" max {published['call_ms_max']} ms; publisher late max {published['late_ms_max']}"
        f" ms, loop lag max {published['loop_lag_ms_max']} ms; opened in {connect_s:.1f} s;"
        f" lost {lost}, duplicated {tally.duplicated}, ended {len(ended)}",
        file=sys.stderr,
    )
    if round_no == 1 and server.name == "relay":
        check_sample(tally.sample, hotel.hotel_id)


def check_sample(sample: bytes, hotel_id: str) -> None:
    """The relay's first event is the documented block: id, event, data of the hotel's state."""
    block = sample.decode() + "}}"  # cut at the close of its "data"
    fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
    data = json.loads(fields["data"])
    if not (
        fields.get("event") == "state"
        and "-" in fields.get("id", "")
        and data["hotel_id"] == hotel_id
        and data["room_id"] is not None  # the relay looked the device's room up
        and data["data"]["device_id"] == device_id(0)
    ):
        raise RuntimeError(f"unexpected event from the relay: {block!r}")


# --- orchestration -----------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> dict[str, Any]:
    outcomes = {"relay": Outcome(), "floor": Outcome()}
    with tempfile.TemporaryDirectory(prefix="bellhop-sse-") as tmp:
        workdir = Path(tmp)
        log = workdir / "servers.log"
        relay_port, floor_port = free_port(), free_port()
        config_path = relay_config_file(
            workdir, relay_port, args.bus, args.redis_url, dict(args.set)
        )
        hotel = await seed(config_path)
        servers: list[Server] = []
        idle_kib: dict[str, int] = {}
        try:
            relay = await Server.start("relay", str(config_path), relay_port, log, args.profile)
            servers.append(relay)
            floor = await Server.start("floor", str(floor_port), floor_port, log, args.profile)
            servers.append(floor)
            idle_kib = {server.name: server.idle_kib for server in servers}
            for round_no in range(1, args.rounds + 1):
                await phase(floor, hotel, [None], args, round_no, outcomes["floor"])
                tokens = await login_all(relay_port, hotel)
                await phase(relay, hotel, tokens, args, round_no, outcomes["relay"])
        except BaseException:
            if log.exists():
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            for server in servers:
                await server.stop()
    product, floor_out = outcomes["relay"], outcomes["floor"]
    p99, floor_p99 = product.p(99), floor_out.p(99)
    due_p99, floor_due_p99 = product.p(99, from_due=True), floor_out.p(99, from_due=True)
    return {
        "clients": args.clients,
        "events_per_s_delivered": round(product.total / product.seconds),
        "p99_delivery_ms": p99,
        "p50_delivery_ms": product.p(50),
        "max_delivery_ms": product.p(100),
        "rss_mib": round(product.peak_kib / 1024, 1),
        "rss_mib_idle": round(idle_kib["relay"] / 1024, 1),
        "p99_from_schedule_ms": due_p99,
        "published_per_s": round(product.published / product.published_s, 1),
        "floor_p99_delivery_ms": floor_p99,
        "floor_p50_delivery_ms": floor_out.p(50),
        "floor_events_per_s_delivered": round(floor_out.total / floor_out.seconds),
        "floor_p99_from_schedule_ms": floor_due_p99,
        "floor_rss_mib": round(floor_out.peak_kib / 1024, 1),
        "floor_rss_mib_idle": round(idle_kib["floor"] / 1024, 1),
        "ratio": round(p99 / floor_p99, 2) if floor_p99 else None,
        "ratio_from_schedule": round(due_p99 / floor_due_p99, 2) if floor_due_p99 else None,
        "cpu_us_per_delivery": {
            "relay": product.per_delivery_us(product.server_cpu_s),
            "relay_clients": product.per_delivery_us(product.client_cpu_s),
            "floor": floor_out.per_delivery_us(floor_out.server_cpu_s),
            "floor_clients": floor_out.per_delivery_us(floor_out.client_cpu_s),
        },
        "publish_call_ms_p50": max(product.call_ms_p50),
        "publish_late_ms_max": product.late_ms_max,
        "floor_publish_late_ms_max": floor_out.late_ms_max,
        "loop_lag_ms_max": product.loop_lag_ms_max,
        "floor_loop_lag_ms_max": floor_out.loop_lag_ms_max,
        "lost": product.lost + floor_out.lost,
        "duplicated": product.duplicated + floor_out.duplicated,
        "ended": len(product.ended) + len(floor_out.ended),
        "open_s": product.connect_s,
        "rate": args.rate,
        "batch": args.batch,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "bus": args.bus,
        "relay_settings": dict(args.set),
        "target_p99_ms": TARGET_P99_MS,
        "target_ratio": TARGET_RATIO,
        "cpus": os.cpu_count(),
    }


def setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 clients, 8 s (under 60 s)")
    parser.add_argument("--clients", type=int, help="SSE clients (default 1,000; --quick 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="events published per second")
    parser.add_argument("--batch", type=int, default=1, help="events per publish call")
    parser.add_argument(
        "--seconds", type=float, help="publishing per phase (default 20; --quick 8)"
    )
    parser.add_argument("--rounds", type=int, help="floor and relay phases (default 2; --quick 1)")
    parser.add_argument("--bus", choices=["memory", "redis"], default="memory")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        type=setting,
        action="append",
        default=[],
        help="a relay setting (e.g. events_recheck_s=60), to find where time goes",
    )
    parser.add_argument("--profile", metavar="DIR", help="cProfile the servers into DIR")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_fd_limit()  # 1,000 streams need more than the usual 1,024 files; children inherit
    import uvloop  # uvicorn's loop ("auto") in production, and the clients'

    if args.profile:
        args.profile = str(Path(args.profile).resolve())
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    if args.serve:
        role, argument = args.serve
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_role(role, argument, args.profile))
        return
    if args.clients is None:
        args.clients = 200 if args.quick else 1000
    if args.seconds is None:
        args.seconds = 8.0 if args.quick else 20.0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    if args.seconds <= WARM_UP_S or args.rate <= 0 or args.batch < 1 or args.rounds < 1:
        parser.error("--seconds must exceed the warm-up, --rate, --batch and --rounds be positive")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        report(runner.run(run(args)))


if __name__ == "__main__":
    main()
