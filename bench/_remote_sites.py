"""P3's processes: the relays, each hotel's gateway and lights, started as their own
processes (bench/remote_command.py), and what waits for them to be ready."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import psutil
from _load import ROOT
from _procs import bytecode_cached
from bellhop.lan.v1 import lan_pb2
from bellhop_edge.auth import LocalTokens, Role
from bellhop_edge.bridge.identity import enrol
from bellhop_edge.localbroker import Credentials, MosquittoBroker

from tests.support.mosquitto import free_port, wait_for_port

if TYPE_CHECKING:
    from bellhop.lan.v1.lan_pb2_grpc import LanServiceAsyncStub

LIGHTS: Final = 4  # per hotel, one room each
COMMAND_TIMEOUT_S: Final = 5.0
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 20.0
HTTP_TIMEOUT_S: Final = 10.0
# With --trace or --profile, the relays and gateways run through the benchmark's script
# (`--serve relay|gateway`), told where their marks and statistics go by these.
SCRIPT: Final = str(Path(__file__).resolve().parent / "remote_command.py")
TRACE_ENV: Final = "BELLHOP_BENCH_TRACE"
PROFILE_ENV: Final = "BELLHOP_BENCH_PROFILE"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of the processes this benchmark starts: none of this process's
    relay settings, their bytecode cached."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BELLHOP_CLOUD_")}
    return {**bytecode_cached(env), "PYTHONUNBUFFERED": "1", **extra}


def stop(*owners: Relay | Site | RedisServer) -> None:
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
class RedisServer:
    """A Redis of one path's own (`redis-server`, no snapshots, no append-only file, as
    the machine's): the bus of its relays carries no other relay's messages."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        with (self.workdir / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        wait_for_port("127.0.0.1", self.port, timeout=START_TIMEOUT_S)


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
            command = [sys.executable, SCRIPT, "--serve", "relay", *command[1:]]
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


async def tenant(base_url: str) -> Tenant:
    """Register an owner on the relay at `base_url`, with an organisation and a hotel."""
    password = secrets.token_urlsafe(16)
    email = f"owner-{secrets.token_hex(4)}@example.com"
    async with httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT_S) as http:
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
            command = [sys.executable, SCRIPT, "--serve", "gateway", *command[1:]]
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


def stop_devices(process: multiprocessing.process.BaseProcess) -> None:
    process.terminate()
    process.join(timeout=10)
