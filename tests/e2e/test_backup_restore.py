"""Backups taken while everything runs, restored elsewhere: nothing the hotel knows is lost.

Real processes throughout: Mosquitto, `bellhop edge run` enrolled with the real
`bellhop edge enrol`, `bellhop cloud run` on SQLite or PostgreSQL, and the
`bellhop edge|cloud backup|restore` commands as an operator runs them.

1. A gateway's backup, taken while its devices report, restored into a new
   data directory: the new gateway is the same one (its LAN API shows the
   devices, state, alerts and command history; its staff token works; the
   relay takes it back), and what it records after the restore reaches the
   relay, although the relay had seen later sequences from the old machine.
2. The relay backed up, the edge recording more, the relay stopped and the
   older backup restored: the relay asks its gateway for a snapshot and ends
   up with everything the edge knows (SQLite and PostgreSQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import aiomqtt
import grpc
import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_devices import codec
from bellhop_devices.messages import Channel
from bellhop_edge.auth import LocalTokens, Role
from google.protobuf import struct_pb2

from tests.e2e.bridge_site import EdgeGateway
from tests.support import waiting
from tests.support.edge_process import until
from tests.support.mosquitto import Credentials, MosquittoBroker, device_client
from tests.support.relay_process import (
    RelayProcess,
    Tenant,
    bytecode_cache,
    enrol_gateway,
    postgres_database,
)

SENSOR: Final = "r101-env"
DOOR: Final = "r101-door"
LIGHT: Final = "r101-light"
DEVICES: Final = {SENSOR: "environment_sensor", DOOR: "door_sensor", LIGHT: "light"}
METRIC: Final = "humidity"
STAFF: Final = "front-desk"
BRIDGE: Final = """
[bridge]
reconnect_min_s = 0.05
reconnect_max_s = 0.3
connect_timeout_s = 2
"""
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def bellhop(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Any:
    """`bellhop ARGS` as an operator runs it; the finished process (output as text)."""
    return subprocess.run(
        [sys.executable, "-m", "bellhop_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )


class Devices:
    """The room's devices on their own MQTT accounts; each reading has its own time."""

    def __init__(self, mosquitto: MosquittoBroker, hotel_id: str) -> None:
        self.mosquitto, self.hotel_id = mosquitto, hotel_id
        self.creds: dict[str, Credentials] = mosquitto.add_devices(hotel_id, list(DEVICES))
        self.readings: list[int] = []  # the times of every reading sent, in order
        self.base = int(time.time() * 1000) - 3_600_000  # in the past: never refused
        self.light_commands: list[str] = []
        self._stack = contextlib.AsyncExitStack()
        self._clients: dict[str, aiomqtt.Client] = {}

    async def __aenter__(self) -> Devices:
        for device_id, creds in self.creds.items():
            client = device_client(self.mosquitto, creds, f"{self.hotel_id}-{device_id}")
            self._clients[device_id] = await self._stack.enter_async_context(client)
        light = self._clients[LIGHT]
        await light.subscribe(codec.topic(self.hotel_id, LIGHT, Channel.CMD), qos=1, timeout=5)
        answering = asyncio.create_task(self._answer(light))
        self._stack.callback(answering.cancel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _answer(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            command = json.loads(bytes(message.payload))
            self.light_commands.append(command["id"])
            reply = {"v": 1, "id": command["id"], "status": "ok", "result": command["params"]}
            await self._publish(LIGHT, Channel.ACK, reply)

    async def _publish(self, device_id: str, channel: Channel, body: dict[str, Any]) -> None:
        topic = codec.topic(self.hotel_id, device_id, channel)
        await self._clients[device_id].publish(topic, json.dumps(body).encode(), qos=1)

    async def report(self, count: int, **more: float) -> None:
        """`count` readings, one after the other (QoS 1: the broker holds each)."""
        for _ in range(count):
            ts = self.base + len(self.readings) + 1
            metrics = {METRIC: ts % 90, **more}
            body = {"v": 1, "ts": ts, "seq": len(self.readings) + 1, "metrics": metrics}
            await self._publish(SENSOR, Channel.TELEMETRY, body)
            self.readings.append(ts)

    async def stream(self, until: asyncio.Event) -> None:
        """Readings until `until` is set, a few hundred a second (a busy hotel's rate)."""
        while not until.is_set():
            await self.report(5)
            await asyncio.sleep(0.02)

    async def breach(self) -> None:
        body = {"v": 1, "ts": int(time.time() * 1000), "kind": "breach", "data": {}}
        await self._publish(DOOR, Channel.EVENT, body)

    async def overheat(self) -> None:
        """A reading above the temperature rule's limit: another alert than the breach's."""
        await self.report(1, temperature=45.0)


class Gateway(EdgeGateway):
    """`bellhop edge run` for the room's devices, on an account of the test's own."""

    def __init__(
        self, workdir: Path, mosquitto: MosquittoBroker, hotel_id: str, creds: Credentials
    ) -> None:
        super().__init__(workdir, mosquitto, hotel_id, creds, DEVICES, BRIDGE)

    async def start(self) -> None:
        runs = self.process.subscribed()
        self.process.start()
        await until(lambda: self.process.subscribed() > runs, 30, "the gateway on the broker")

    def stop(self) -> None:
        if self.process.proc is not None and self.process.proc.poll() is None:
            assert self.process.stop(signal.SIGTERM) == 0, self.process.log_tail()

    def readings(self) -> int:
        rows = self.query(
            "SELECT count(*) FROM (SELECT ts FROM telemetry_recent UNION SELECT ts FROM telemetry)"
        )
        return int(rows[0][0]) if rows else 0

    @contextlib.asynccontextmanager
    async def lan(
        self, token: str
    ) -> AsyncIterator[tuple[lan_pb2_grpc.LanServiceAsyncStub, Metadata]]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.lan_port}") as channel:
            stub = lan_pb2_grpc.LanServiceStub(channel)
            auth = (("authorization", f"Bearer {token}"),)
            await stub.GetGatewayStatus(
                lan_pb2.GetGatewayStatusRequest(), metadata=auth, timeout=10, wait_for_ready=True
            )
            yield stub, auth


async def lan_picture(stub: lan_pb2_grpc.LanServiceAsyncStub, auth: Metadata) -> dict[str, Any]:
    """What staff see on the LAN: devices, the door's and light's state, every alert."""
    devices = await stub.ListDevices(
        lan_pb2.ListDevicesRequest(include_unknown=True), metadata=auth, timeout=5
    )
    states = {}
    for device_id in (DOOR, LIGHT):
        reply = await stub.GetDevice(
            lan_pb2.GetDeviceRequest(device_id=device_id), metadata=auth, timeout=5
        )
        states[device_id] = reply.reported.SerializeToString(deterministic=True)
    alerts = await stub.ListAlerts(lan_pb2.ListAlertsRequest(limit=100), metadata=auth, timeout=5)
    return {
        "devices": sorted((d.device_id, d.kind, d.room_id) for d in devices.devices),
        "states": states,
        "alerts": sorted(
            (a.alert_id, a.kind, a.state, a.acknowledged_by, a.note) for a in alerts.alerts
        ),
    }


def light_command(command_id: str) -> lan_pb2.SendCommandRequest:
    params = struct_pb2.Struct()
    params.update({"on": True, "level": 40})
    return lan_pb2.SendCommandRequest(
        device_id=LIGHT, name="set_light", params=params, command_id=command_id
    )


async def raise_and_acknowledge(
    gateway: Gateway, trigger: Awaitable[None], token: str
) -> common_pb2.Alert:
    """An alert raised by `trigger`, acknowledged by the staff on the LAN."""
    before = set(gateway.alerts())
    await trigger
    await until(lambda: len(gateway.alerts()) > len(before), 20, "the alert raised")
    (newest,) = set(gateway.alerts()) - before
    async with gateway.lan(token) as (stub, auth):
        reply = await stub.AcknowledgeAlert(
            lan_pb2.AcknowledgeAlertRequest(alert_id=newest, note="on my way"),
            metadata=auth,
            timeout=5,
        )
    alert: common_pb2.Alert = reply.alert
    return alert


async def bridged(relay: RelayProcess, gateway: Gateway, devices: Devices) -> None:
    """Until the gateway holds every reading sent and the relay acknowledged all of it."""
    total = len(devices.readings)
    await until(lambda: gateway.readings() >= total, 30, f"{total} readings stored")
    await until(lambda: gateway.backlog() == 0, 30, "everything acknowledged by the relay")


def relay_readings(tenant: Tenant) -> list[int]:
    from datetime import datetime

    points = tenant.points(SENSOR, METRIC)
    return sorted(round(datetime.fromisoformat(p["ts"]).timestamp() * 1000) for p in points)


def relay_alerts(tenant: Tenant) -> dict[str, tuple[Any, ...]]:
    return {
        a["alert_id"]: (a["kind"], a["state"], a["device_id"], a["acknowledged_by"])
        for a in tenant.alerts()
    }


async def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Until `check` (REST reads of the relay, run in a thread) holds; TimeoutError after."""
    await waiting.until(lambda: asyncio.to_thread(check), timeout, what, every=0.05)


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


# -- 1. a gateway onto a new machine -----------------------------------------------------------
@pytest.mark.timeout(120)
async def test_a_gateway_restored_from_its_backup_elsewhere_is_the_same_gateway(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    relay = RelayProcess(tmp_path / "relay")
    old: Gateway | None = None
    new: Gateway | None = None
    try:
        await asyncio.to_thread(relay.start)
        tenant = relay.tenant()
        creds = mosquitto.add_gateway(tenant.hotel_id)
        devices = Devices(mosquitto, tenant.hotel_id)
        mosquitto.reload()
        old = Gateway(tmp_path / "old", mosquitto, tenant.hotel_id, creds)
        token = LocalTokens(old.data_dir / "staff-tokens.json").create(STAFF, Role.STAFF)
        await asyncio.to_thread(enrol_gateway, old.config, relay, tenant.enrolment_token())
        await old.start()
        async with devices:
            await devices.report(40)
            alert = await raise_and_acknowledge(old, devices.breach(), token)
            async with old.lan(token) as (stub, auth):
                done = await stub.SendCommand(light_command("cmd-before"), metadata=auth, timeout=5)
                assert done.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
                before = await lan_picture(stub, auth)
            await bridged(relay, old, devices)

            # The backup, while the sensor streams.
            backed_up = asyncio.Event()
            streaming = asyncio.create_task(devices.stream(until=backed_up))
            await until(lambda: old is not None and old.readings() > 60, 20, "streaming")
            archive = tmp_path / "gateway.tar.gz"
            sent_before = len(devices.readings)
            made = await asyncio.to_thread(
                bellhop, "edge", "backup", "--config", str(old.config), "--output", str(archive)
            )
            sent_after = len(devices.readings)
            backed_up.set()
            await streaming
            assert made.returncode == 0, made.stderr
            assert private(archive)
            key = (old.data_dir / "bridge" / "key.pem").read_text()
            assert key not in made.stdout + made.stderr
            assert token not in made.stdout + made.stderr
            # The old machine records more, which the relay acknowledges, then dies.
            await devices.report(30)
            await bridged(relay, old, devices)
            old.process.kill()

            new = Gateway(tmp_path / "new", mosquitto, tenant.hotel_id, creds)
            restored = await asyncio.to_thread(
                bellhop, "edge", "restore", "--config", str(new.config), str(archive)
            )
            assert restored.returncode == 0, restored.stderr
            assert f"restored hotel {tenant.hotel_id}" in restored.stdout
            # One consistent moment of the store: readings are kept in the order they
            # were sent, so the restored ones are exactly the first k sent.
            kept = [ts for (ts,) in new.query("SELECT ts FROM telemetry_recent ORDER BY ts")]
            assert sent_before <= len(kept) <= sent_after
            assert kept == devices.readings[: len(kept)]

            opens = relay.logged("snapshot applied")
            await new.start()
            # The same gateway to the relay (its key and identity came back with it), which
            # holds later sequences than this copy: renumbered past them, and a snapshot.
            await until(lambda: relay.logged("snapshot applied") > opens, 30, "a resync")
            assert new.process.logged("unsent events renumbered; sending a snapshot") == 1
            # ...and to the staff: the same token, devices, state, alerts, commands.
            async with new.lan(token) as (stub, auth):
                assert await lan_picture(stub, auth) == before
                again = await stub.SendCommand(
                    light_command("cmd-before"), metadata=auth, timeout=5
                )
            assert again.result == done.result
            assert devices.light_commands == ["cmd-before"]  # answered from its history
            assert new.alerts()[alert.alert_id][3] == STAFF

            # What it records now reaches the relay, though the relay saw later sequences
            # from the old machine than this copy of the store holds.
            held = new.readings()
            await devices.report(30)
            await until(lambda: new.readings() >= held + 30, 30, "readings after the restore")
            await until(lambda: new.backlog() == 0, 30, "acknowledged by the relay")
            assert set(devices.readings[-30:]) <= set(relay_readings(tenant))
            assert relay_alerts(tenant) == new.alerts()
    finally:
        for gateway in (old, new):
            if gateway is not None and gateway.process.proc is not None:
                gateway.process.stop(signal.SIGKILL)
        relay.close()


# -- 2. the relay onto an older backup ---------------------------------------------------------
@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_a_relay_restored_from_an_older_backup_resyncs_from_its_gateway(
    tmp_path: Path, mosquitto: MosquittoBroker, backend: str
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if backend == "postgresql":
            url = await stack.enter_async_context(postgres_database("bellhop_backup"))
        relay = RelayProcess(tmp_path / "relay", database_url=url)
        stack.callback(relay.close)
        await asyncio.to_thread(relay.start)
        tenant = relay.tenant()
        creds = mosquitto.add_gateway(tenant.hotel_id)
        devices = Devices(mosquitto, tenant.hotel_id)
        mosquitto.reload()
        await stack.enter_async_context(devices)
        gateway = Gateway(tmp_path / "gateway", mosquitto, tenant.hotel_id, creds)
        stack.callback(lambda: gateway.process.stop(signal.SIGKILL))
        token = LocalTokens(gateway.data_dir / "staff-tokens.json").create(STAFF, Role.STAFF)
        await asyncio.to_thread(enrol_gateway, gateway.config, relay, tenant.enrolment_token())
        await gateway.start()
        await devices.report(30)
        await raise_and_acknowledge(gateway, devices.breach(), token)
        await bridged(relay, gateway, devices)

        env = relay._env  # the relay's own configuration, as its service would have it
        archive = tmp_path / "relay.tar.gz"
        made = await asyncio.to_thread(
            bellhop, "cloud", "backup", "--output", str(archive), env=env, cwd=relay.workdir
        )
        assert made.returncode == 0, made.stderr
        assert private(archive)
        # After the backup: more readings, another alert acknowledged on site.
        await devices.report(30)
        await raise_and_acknowledge(gateway, devices.overheat(), token)
        await bridged(relay, gateway, devices)
        assert relay_readings(tenant) == devices.readings

        # Never over a running relay's database, --force or not.
        refused = await asyncio.to_thread(
            bellhop, "cloud", "restore", "--force", str(archive), env=env, cwd=relay.workdir
        )
        assert refused.returncode == 1
        assert "stop" in refused.stderr, refused.stderr
        assert relay.stop() == 0
        restored = await asyncio.to_thread(
            bellhop, "cloud", "restore", "--force", str(archive), env=env, cwd=relay.workdir
        )
        assert restored.returncode == 0, restored.stderr
        assert "1 gateways will be asked for a snapshot" in restored.stdout
        assert len(await relay.rows("SELECT gateway_id FROM bridge_resyncs")) == 1

        await asyncio.to_thread(relay.start)
        await until(lambda: relay.logged("snapshot requested after a restore") == 1, 30, "asked")
        await until_rows(relay, "SELECT gateway_id FROM bridge_resyncs", 0)
        # Everything the edge knows: every reading (the edge sends again what the restored
        # relay lacks; its own acknowledgements are already past them, so the relay is read),
        # both alerts as they stand on site.
        await eventually(lambda: relay_readings(tenant) == devices.readings, "every reading")
        await eventually(lambda: relay_alerts(tenant) == gateway.alerts(), "every alert")
        assert len(gateway.alerts()) == 2


async def until_rows(relay: RelayProcess, sql: str, count: int, timeout: float = 20) -> None:
    async def counted() -> bool:
        return len(await relay.rows(sql)) == count

    await waiting.until(counted, timeout, f"{sql}: {count} rows", every=0.05)
