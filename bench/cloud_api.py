"""Cloud API benchmark: authenticated device pages against one relay process.

64 keep-alive clients read page 1 (100 devices) of a 500-device hotel with a
valid access token, against one relay process on SQLite and on PostgreSQL.
The floor, measured in the same run, is the same server process (the SQLite
one) answering a constant JSON body with no auth and no storage, from a route
matched first. Each relay runs in its own process; the load generator is a
minimal HTTP/1.1 client in this one. Floor, SQLite and PostgreSQL take turns
in short rounds, so background load is shared among them.

    .venv/bin/python bench/cloud_api.py [--quick]

Prints one JSON object as its last line: sqlite_rps, sqlite_p99_ms,
postgres_rps, postgres_p99_ms, floor_rps (and the ratios and targets).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pg import create_database, drop_database

CLIENTS = 64
DEVICES = 500
PAGE = 100
TARGET_RATIO = 0.35
TARGET_P99_MS = 100.0
FLOOR_PATH = "/bench/floor"
WARM_UP_S = 0.5


# --- server side -------------------------------------------------------------


def serve(config_path: Path) -> None:
    """Run one relay process with the extra floor route, until terminated."""
    import uvicorn
    from bellhop_cloud.app import create_app
    from bellhop_cloud.config import load_config

    config = load_config(config_path)
    app = create_app(config)
    body = {"status": "ok", "service": "bellhop-cloud"}

    @app.get(FLOOR_PATH, include_in_schema=False)
    async def floor() -> dict[str, str]:
        return body

    # First in the route list, so the floor pays no route matching the relay's routes pay.
    app.router.routes.insert(0, app.router.routes.pop())

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=config.port,
        access_log=False,
        log_level="warning",
        lifespan="on",
    )


# --- set-up ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed(config: Any) -> tuple[str, str]:
    """One owner, one hotel of 500 devices; returns (hotel id, access token)."""
    from bellhop_cloud import hotels, orgs
    from bellhop_cloud.relay import Relay

    relay = await Relay.open(config)
    try:
        user = await relay.accounts.register(
            "bench@example.com", "benchmark password", "bench", address=None
        )
        async with relay.store.write() as conn:
            org = await orgs.create(conn, "Bench Hotels", user.user_id)
            hotel = await hotels.create(conn, org.org_id, "Bench", "UTC", actor_id=user.user_id)
            now = datetime.now(UTC)
            await hotels.upsert_rooms(
                conn,
                hotel.hotel_id,
                [hotels.Room(f"{n:03d}", f"Room {n}", n // 20, now) for n in range(100)],
            )
            await hotels.upsert_devices(
                conn,
                hotel.hotel_id,
                [
                    hotels.Device(
                        device_id=f"dev-{n:04d}",
                        kind="thermostat",
                        room_id=f"{n % 100:03d}",
                        firmware="1.4.2",
                        online=True,
                        state={"temperature": 21.5, "setpoint": 22.0, "mode": "heat"},
                        last_seen=now,
                    )
                    for n in range(DEVICES)
                ],
            )
        # A real login: an access token belongs to a live session.
        session = await relay.accounts.login(
            "bench@example.com", "benchmark password", address=None
        )
        return hotel.hotel_id, session.access_token
    finally:
        await relay.close()


def write_config(workdir: Path, database_url: str, port: int) -> Path:
    path = workdir / f"relay-{port}.toml"
    values = {
        "database_url": database_url,
        "signing_key_path": str(workdir / "signing-key.pem"),
        "port": port,
        # This benchmark measures REST reads; several nodes share one machine.
        "bridge_enabled": False,
        "access_token_ttl_s": 900,
        "password_time_cost": 1,
        "password_memory_kib": 1024,
        "password_parallelism": 1,
    }
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


async def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"relay exited with {process.returncode}")
        try:
            status, _ = await one_request(port, "/readyz", {})
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("relay did not become ready")


# --- load --------------------------------------------------------------------


async def one_request(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request_bytes(path, headers))
        return await asyncio.wait_for(read_response(reader), 5)
    finally:
        writer.close()


def request_bytes(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def load(port: int, path: str, headers: dict[str, str], seconds: float, into: Result) -> None:
    """CLIENTS keep-alive connections, each sending the next request on reply."""
    request = request_bytes(path, headers)
    measuring = False
    stop = False

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while not stop:
                started = time.perf_counter()
                writer.write(request)
                status, _ = await asyncio.wait_for(read_response(reader), 10)
                if measuring:
                    into.latencies.append(time.perf_counter() - started)
                    into.errors += status != 200
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    await asyncio.sleep(WARM_UP_S)  # connections open, caches filled
    measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    into.seconds += time.perf_counter() - started
    stop = True
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    # A client that died (timeout, reset) is an error, not a silent stop.
    into.errors += sum(isinstance(o, Exception) for o in outcomes)
    into.requests = len(into.latencies)


# --- orchestration -----------------------------------------------------------


@dataclass
class RelayProcess:
    port: int
    path: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]


async def start_relay(workdir: Path, database_url: str) -> RelayProcess:
    from bellhop_cloud.config import load_config

    port = free_port()
    config_path = write_config(workdir, database_url, port)
    hotel_id, token = await seed(load_config(config_path))
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(config_path)])
    relay = RelayProcess(
        port,
        f"/v1/hotels/{hotel_id}/devices?limit={PAGE}",
        {"Authorization": f"Bearer {token}"},
        process,
    )
    try:
        await wait_ready(port, process)
        status, body = await one_request(port, relay.path, relay.headers)
        assert status == 200, (status, body[:200])
        assert len(json.loads(body)["items"]) == PAGE
    except BaseException:
        stop_relay(relay)  # a relay that failed its check does not outlive the run
        raise
    return relay


def stop_relay(relay: RelayProcess) -> None:
    relay.process.terminate()
    relay.process.wait(timeout=20)


async def run(rounds: int, seconds: float) -> dict[str, Any]:
    """Both relays run side by side (the idle one costs nothing); the phases take
    turns in short rounds so that load from anything else on the machine falls
    on all of them alike."""
    results = {"floor": Result(), "sqlite": Result(), "postgres": Result()}
    with tempfile.TemporaryDirectory(prefix="bellhop-bench-") as tmp:
        workdir = Path(tmp)
        name, url = await create_database("bellhop_bench")
        relays: list[RelayProcess] = []
        try:
            sqlite = await start_relay(workdir, f"sqlite:///{workdir / 'relay.db'}")
            relays.append(sqlite)
            postgres = await start_relay(workdir, url)
            relays.append(postgres)
            for _ in range(rounds):
                await load(sqlite.port, FLOOR_PATH, {}, seconds, results["floor"])
                await load(sqlite.port, sqlite.path, sqlite.headers, seconds, results["sqlite"])
                await load(
                    postgres.port, postgres.path, postgres.headers, seconds, results["postgres"]
                )
        finally:
            for relay in relays:
                stop_relay(relay)
            await drop_database(name)
    for label, result in results.items():
        print(
            f"{label:9s} {result.rps:8.0f} req/s  p50 {result.percentile_ms(0.5):6.2f} ms  "
            f"p99 {result.percentile_ms(0.99):6.2f} ms  errors {result.errors}",
            file=sys.stderr,
        )
    floor, sqlite_result, postgres_result = results.values()
    return {
        "clients": CLIENTS,
        "devices": DEVICES,
        "page": PAGE,
        "rounds": rounds,
        "seconds_per_phase": rounds * seconds,
        "floor_rps": round(floor.rps, 1),
        "sqlite_rps": round(sqlite_result.rps, 1),
        "sqlite_p99_ms": round(sqlite_result.percentile_ms(0.99), 2),
        "postgres_rps": round(postgres_result.rps, 1),
        "postgres_p99_ms": round(postgres_result.percentile_ms(0.99), 2),
        "sqlite_ratio": round(sqlite_result.rps / floor.rps, 3),
        "postgres_ratio": round(postgres_result.rps / floor.rps, 3),
        "errors": sum(r.errors for r in results.values()),
        "target_ratio": TARGET_RATIO,
        "target_p99_ms": TARGET_P99_MS,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short phases (under 60 s)")
    parser.add_argument("--seconds", type=float, help="measured seconds per phase and round")
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve))
        return
    rounds = 3 if args.quick else 6
    seconds = args.seconds or (1.5 if args.quick else 3.0)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(rounds, seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
