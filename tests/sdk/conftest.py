"""A whole hotel for the SDK's tests, on real processes.

`SdkSite` is Mosquitto, `bellhop cloud run` (SQLite), an owner's organisation
and hotel, a manager and a viewer account, `bellhop edge run` enrolled with the
real `bellhop edge enrol` and bridged to the relay, LAN tokens for staff and a
viewer, and simulated devices (`DeviceHub`: one MQTT connection each, in a
thread of their own, answering commands) that report on demand.

    async def test_x(sdk_site: SdkSite, lan: LanTransport, cloud: CloudTransport): ...

`sdk_site` is module-scoped (starting it takes seconds): tests that share it
must leave it as they found it (every device online, the gateway running).
A test that breaks the site builds its own: `with sdk_site_at(tmp_path) as site:`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import aiomqtt
import grpc
import httpx
import pytest
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role
from bellhop_sdk.auth import CloudLogin, StaticToken
from bellhop_sdk.cloud import CloudTransport
from bellhop_sdk.lan import LanTransport
from bellhop_sdk.transport import TokenSource

from tests.support.edge_process import EdgeProcess, write_config
from tests.support.mosquitto import Credentials, MosquittoBroker, require_mosquitto
from tests.support.relay_process import PASSWORD, RelayProcess, Tenant, enrol_gateway
from tests.support.waiting import NotWithin, eventually

T = TypeVar("T")

THERMOSTAT: Final = "r101-thermostat"
LIGHT: Final = "r101-light"
DOOR: Final = "r101-door"
ENV: Final = "r101-env"
DEVICES: Final = {
    THERMOSTAT: "thermostat",
    LIGHT: "light",
    DOOR: "door_sensor",
    ENV: "environment_sensor",
}
ROOM: Final = "101"
FIRMWARE: Final = "1.0.0"
# Fast reconnects of the bridge, so that a site is bridged again soon after a restart.
BRIDGE: Final = """
[bridge]
reconnect_min_s = 0.05
reconnect_max_s = 0.5
connect_timeout_s = 2
"""
READY_S: Final = 45.0


@dataclass(frozen=True)
class Account:
    email: str
    password: str = PASSWORD


# -- simulated devices --------------------------------------------------------------------------
@dataclass
class DeviceHub:
    """The hotel's devices, each on its own MQTT account, in a thread with its own loop.

    Fixtures of any scope can share it: tests call the async methods from their
    own loop. A command is acknowledged "ok" with its params as the result,
    unless its params hold `"fail": true`: then the device reports an error.
    """

    broker: MosquittoBroker
    hotel_id: str
    creds: dict[str, Credentials]
    commands: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _clients: dict[str, aiomqtt.Client] = field(default_factory=dict)
    _stack: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seq: int = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._run(self._connect_all()).result(timeout=30)

    def stop(self) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._run(self._stack.aclose()).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wait_for(asyncio.wrap_future(self._run(coro)), 15)

    def received(self, device_id: str) -> list[str]:
        """Ids of the commands the device received, in order."""
        with self._lock:
            return [c["id"] for c in self.commands.get(device_id, [])]

    async def _connect_all(self) -> None:
        for device_id, kind in DEVICES.items():
            creds = self.creds[device_id]
            status = codec.topic(self.hotel_id, device_id, Channel.STATUS)
            client = aiomqtt.Client(
                self.broker.host,
                self.broker.port,
                username=creds.username,
                password=creds.password,
                identifier=f"{self.hotel_id}-{device_id}",
                timeout=10,
                # As the firmware and bellhop_devices.sim do: a command's answer does
                # not wait out the gateway's delayed ACK (40 ms) behind Nagle.
                socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
                will=aiomqtt.Will(status, json.dumps({"v": 1, "state": "offline"}), 1, True),
            )
            self._clients[device_id] = await self._stack.enter_async_context(client)
            await client.subscribe(codec.topic(self.hotel_id, device_id, Channel.CMD), qos=1)
            task = asyncio.create_task(self._serve(device_id, client))
            self._stack.callback(task.cancel)
            birth = {"v": 1, "state": "online", "ts": _ms(), "kind": kind, "firmware": FIRMWARE}
            await client.publish(status, json.dumps(birth).encode(), qos=1, retain=True)

    async def _serve(self, device_id: str, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            command = json.loads(bytes(message.payload))
            with self._lock:
                self.commands.setdefault(device_id, []).append(command)
            params = command.get("params") or {}
            if params.get("fail"):
                reply = {"id": command["id"], "status": "error", "error": "bad_params: fail"}
            else:
                reply = {"id": command["id"], "status": "ok", "result": params}
            await self._publish(device_id, Channel.ACK, {"v": 1, **reply})

    async def _publish(self, device_id: str, channel: Channel, body: dict[str, Any]) -> None:
        topic = codec.topic(self.hotel_id, device_id, channel)
        await self._clients[device_id].publish(topic, json.dumps(body).encode(), qos=1)

    async def send(self, device_id: str, channel: Channel, body: dict[str, Any]) -> None:
        await self._call(self._publish(device_id, channel, {"v": 1, **body}))

    async def report_state(self, device_id: str, values: dict[str, Any]) -> int:
        """The device reports `values`; returns the report's time (ms)."""
        ts = _ms()
        await self.send(device_id, Channel.STATE, {"ts": ts, "values": values})
        return ts

    async def telemetry(self, device_id: str, metrics: dict[str, float], ts: int) -> None:
        with self._lock:
            self._seq += 1
            seq = self._seq
        body = {"ts": ts, "seq": seq, "metrics": metrics}
        await self.send(device_id, Channel.TELEMETRY, body)

    async def breach(self, device_id: str = DOOR) -> None:
        """A forced door: the gateway raises a breach alert."""
        await self.send(device_id, Channel.EVENT, {"ts": _ms(), "kind": "breach", "data": {}})


def _ms() -> int:
    return int(time.time() * 1000)


# -- the site ------------------------------------------------------------------------------------
@dataclass
class SdkSite:
    workdir: Path
    broker: MosquittoBroker
    relay: RelayProcess
    tenant: Tenant
    edge: EdgeProcess
    lan_port: int
    devices: DeviceHub
    manager: Account
    viewer: Account
    lan_token: str  # staff, LAN only
    lan_viewer_token: str

    @property
    def hotel_id(self) -> str:
        return self.tenant.hotel_id

    @property
    def org_id(self) -> str:
        return self.tenant.org_id

    @property
    def relay_url(self) -> str:
        return self.relay.url

    @property
    def lan_target(self) -> str:
        return f"127.0.0.1:{self.lan_port}"

    def login(self, account: Account | None = None) -> CloudLogin:
        account = account or self.manager
        return CloudLogin(self.relay_url, account.email, account.password, trust_env=False)

    def lan(self, tokens: TokenSource | None = None) -> LanTransport:
        return LanTransport(self.lan_target, tokens or StaticToken(self.lan_token))

    def cloud(self, tokens: TokenSource) -> CloudTransport:
        return CloudTransport(self.relay_url, tokens, trust_env=False)

    def wait_ready(self, timeout: float = READY_S) -> None:
        """Until the LAN API answers, the bridge is open and both ends see every device online."""
        deadline = time.monotonic() + timeout
        auth = (("authorization", f"Bearer {self.lan_token}"),)
        with grpc.insecure_channel(self.lan_target) as channel:
            stub = lan_pb2_grpc.LanServiceStub(channel)

            def lan_online() -> bool:
                try:
                    answer = stub.ListDevices(
                        lan_pb2.ListDevicesRequest(), metadata=auth, timeout=2
                    )
                except grpc.RpcError:
                    return False
                online = {d.device_id for d in answer.devices if d.connectivity == 1}
                return online >= set(DEVICES)

            _poll(lan_online, deadline, "the gateway sees every device online", self.edge)
        _poll(self._cloud_online, deadline, "the relay sees every device online", self.edge)

    def _cloud_online(self) -> bool:
        try:
            links = self.tenant.get("/sync")
            if not any(link["connected"] for link in links):
                return False
            page = self.tenant.get("/devices", limit=100)
        except (AssertionError, httpx.HTTPError):
            return False
        online = {d["device_id"] for d in page["items"] if d["online"]}
        return online >= set(DEVICES)


def _poll(check: Callable[[], bool], deadline: float, what: str, edge: EdgeProcess) -> None:
    try:
        eventually(check, max(0.0, deadline - time.monotonic()), what, every=0.05)
    except NotWithin:
        raise TimeoutError(f"{what}: not in time\n{edge.log_tail()}") from None


def _account(relay: RelayProcess, tenant: Tenant, name: str, role: str) -> Account:
    account = Account(f"{name}.{secrets.token_hex(4)}@example.com")
    with relay.http() as http:
        body = {"email": account.email, "password": PASSWORD, "display_name": name}
        assert http.post("/v1/auth/register", json=body).status_code == 201
        grant = {"email": account.email, "role": role, "hotel_id": tenant.hotel_id}
        answer = http.post(f"/v1/orgs/{tenant.org_id}/grants", json=grant, headers=tenant.headers)
        assert answer.status_code == 201, answer.text
    return account


@contextlib.contextmanager
def sdk_site_at(
    workdir: Path, *, relay_settings: Mapping[str, str | int | float] | None = None
) -> Iterator[SdkSite]:
    """A whole site under `workdir`, ready (see `SdkSite.wait_ready`); stopped afterwards.
    `relay_settings`: extra relay configuration (e.g. `{"access_token_ttl_s": 30}`)."""
    require_mosquitto()
    with contextlib.ExitStack() as stack:
        (workdir / "broker").mkdir(parents=True)
        broker = MosquittoBroker(workdir / "broker")
        broker.start()
        stack.callback(broker.stop)
        relay = RelayProcess(workdir / "relay", settings=relay_settings)
        relay.start()
        stack.callback(relay.close)
        tenant = relay.tenant()
        manager = _account(relay, tenant, "manager", "manager")
        viewer = _account(relay, tenant, "viewer", "viewer")
        gateway = broker.add_gateway(tenant.hotel_id)
        creds = broker.add_devices(tenant.hotel_id, list(DEVICES))
        broker.reload()
        (workdir / "gateway").mkdir()
        config = workdir / "gateway" / "edge.toml"
        port = write_config(
            config,
            hotel_id=tenant.hotel_id,
            mosquitto=broker,
            gateway=gateway,
            devices=dict(DEVICES),
            extra=BRIDGE,
        )
        enrol_gateway(config, relay, tenant.enrolment_token())
        tokens = LocalTokens(config.parent / "edge" / "staff-tokens.json")
        lan_token = tokens.create("front-desk", Role.STAFF)
        lan_viewer = tokens.create("night-watch", Role.VIEWER)
        edge = EdgeProcess(config)
        edge.start()
        stack.callback(lambda: edge.proc is not None and edge.proc.poll() is None and edge.stop())
        devices = DeviceHub(broker, tenant.hotel_id, creds)
        devices.start()
        stack.callback(devices.stop)
        site = SdkSite(
            workdir, broker, relay, tenant, edge, port, devices, manager, viewer, lan_token,
            lan_viewer,
        )  # fmt: skip
        site.wait_ready()
        yield site


@pytest.fixture(scope="module")
def sdk_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SdkSite]:
    with sdk_site_at(tmp_path_factory.mktemp("sdk-site")) as site:
        yield site


@pytest.fixture
async def manager_login(sdk_site: SdkSite) -> AsyncIterator[CloudLogin]:
    """The manager's cloud session (logged in), closed after the test."""
    login = sdk_site.login()
    await login.login()
    try:
        yield login
    finally:
        await login.aclose()


@pytest.fixture
async def lan(sdk_site: SdkSite) -> AsyncIterator[LanTransport]:
    """The LAN path with the staff's LAN-only token."""
    transport = sdk_site.lan()
    try:
        yield transport
    finally:
        await transport.aclose()


@pytest.fixture
async def cloud(sdk_site: SdkSite, manager_login: CloudLogin) -> AsyncIterator[CloudTransport]:
    """The cloud path as the manager."""
    transport = sdk_site.cloud(manager_login)
    try:
        yield transport
    finally:
        await transport.aclose()
