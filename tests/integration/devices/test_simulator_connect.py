"""Connecting the way a hotel's devices do: TLS, per-device credentials and an
ACL from a provisioning file; and riding out a broker that is late or restarts."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Ack, AckStatus, Channel, Command, DeviceKind, Status
from bellhop_devices.sim import Broker, Link, SimulatedDevice, SimulatedHotel, load_provisioning

from tests.support.mosquitto import free_port

from .conftest import run_mosquitto, subscribe, wait_until

pytestmark = pytest.mark.broker


def no_delay() -> Iterator[float]:
    return itertools.repeat(0.05)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _certificates(workdir: Path) -> tuple[Path, Path, Path]:
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=bellhop-test-ca", cwd=workdir)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=workdir)  # fmt: skip
    (workdir / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext",
             cwd=workdir)  # fmt: skip
    return workdir / "ca.pem", workdir / "server.pem", workdir / "server.key"


def _acl(hotel_id: str, device_ids: list[str]) -> str:
    lines = ["user edge", f"topic readwrite hotel/{hotel_id}/#", ""]
    for device_id in device_ids:
        lines.append(f"user {device_id}")
        for channel in codec.DEVICE_CHANNELS:
            lines.append(f"topic write {codec.topic(hotel_id, device_id, channel)}")
        lines.append(f"topic read {codec.topic(hotel_id, device_id, Channel.CMD)}")
        lines.append(f"topic read {codec.broadcast_topic(hotel_id)}")
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class Secured:
    port: int
    ca: Path
    conf: str
    provisioning: Path


@pytest.fixture
def secured(tmp_path: Path, hotel_id: str) -> Secured:
    """Certificates, password file, ACL and provisioning file for a TLS broker."""
    ca, cert, key = _certificates(tmp_path)
    accounts = {"edge": "edge-pw", "r101-light": "pw-light", "r101-door_lock": "pw-lock"}
    passwd = tmp_path / "passwd"
    for user, password in accounts.items():
        subprocess.run(
            [
                "mosquitto_passwd",
                *([] if passwd.exists() else ["-c"]),
                "-b",
                str(passwd),
                user,
                password,
            ],
            check=True,
            capture_output=True,
            timeout=10,
        )
    (tmp_path / "acl").write_text(
        _acl(hotel_id, ["r101-light", "r101-door_lock"]), encoding="utf-8"
    )
    port = free_port()
    conf = (
        f"allow_anonymous false\npassword_file {passwd}\nacl_file {tmp_path / 'acl'}\nuser root\n"
        f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
    )
    devices = [
        {"device_id": "r101-light", "room_id": "101", "kind": "light",
         "username": "r101-light", "password": "pw-light"},
        {"device_id": "r101-door_lock", "room_id": "101", "kind": "door_lock",
         "username": "r101-door_lock", "password": "pw-lock"},
        # An unknown account: refused by the broker, retried, never online.
        {"device_id": "r102-light", "room_id": "102", "kind": "light",
         "username": "r102-light", "password": "wrong"},
    ]  # fmt: skip
    provisioning = tmp_path / "provisioning.json"
    provisioning.write_text(
        json.dumps(
            {
                "hotel_id": hotel_id,
                "broker": {"host": "127.0.0.1", "port": port, "tls": True, "ca": str(ca)},
                "devices": devices,
            }
        ),
        encoding="utf-8",
    )
    return Secured(port, ca, conf, provisioning)


async def test_provisioned_devices_connect_over_tls_with_their_own_credentials(
    tmp_path: Path, hotel_id: str, secured: Secured
) -> None:
    port, ca, conf, provisioning = secured.port, secured.ca, secured.conf, secured.provisioning
    tls = ssl.create_default_context(cafile=str(ca))
    with run_mosquitto(tmp_path / "broker", port, conf):
        hotel = SimulatedHotel.from_provisioning(
            load_provisioning(provisioning), interval_s=0.1, reconnect_delays=no_delay
        )
        async with (
            aiomqtt.Client(
                "127.0.0.1", port, username="edge", password="edge-pw", tls_context=tls, timeout=5
            ) as edge,
            hotel,
        ):
            await subscribe(edge, codec.subscriptions(hotel_id))
            light = hotel.devices["r101-light"]
            await light.wait_online()
            await hotel.devices["r101-door_lock"].wait_online()
            cmd = Command(
                "c-tls-1",
                "set_light",
                {"on": True, "brightness": 30},
                int(time.time() * 1000) + 10_000,
            )
            await edge.publish(light.topic(Channel.CMD), codec.encode_command(cmd), qos=1)
            births: set[str] = set()
            ack: Ack | None = None
            async with asyncio.timeout(5):
                async for message in edge.messages:
                    assert isinstance(message.payload, bytes)
                    decoded = codec.decode(message.topic.value, message.payload, hotel_id=hotel_id)
                    if isinstance(decoded, Status) and decoded.online:
                        births.add(decoded.device_id)
                    if isinstance(decoded, Ack):
                        ack = decoded
                    if ack is not None and len(births) == 2:
                        break
            assert births == {"r101-light", "r101-door_lock"}
            assert ack == Ack("r101-light", "c-tls-1", AckStatus.OK, {"on": True, "brightness": 30})
            refused = hotel.devices["r102-light"]
            await wait_until(lambda: refused.link is Link.BACKING_OFF, "refused and backing off")
            assert refused.stats.connects == 0


async def test_device_waits_for_a_late_broker_and_rides_out_a_restart(
    tmp_path: Path, hotel_id: str
) -> None:
    port = free_port()
    failed_attempts = 0

    def counted_delays() -> Iterator[float]:
        # The device asks for a delay after every attempt that failed.
        nonlocal failed_attempts
        for delay in no_delay():
            failed_attempts += 1
            yield delay

    device = SimulatedDevice(
        hotel_id=hotel_id,
        device_id="r101-thermostat",
        kind=DeviceKind.THERMOSTAT,
        broker=Broker(port=port),
        interval_s=0.1,
        reconnect_delays=counted_delays,
        timeout_s=2,
    )
    async with device:
        await wait_until(lambda: failed_attempts >= 3, "three failed connection attempts")
        assert device.link in (Link.CONNECTING, Link.BACKING_OFF)
        assert device.stats.connects == 0
        with run_mosquitto(tmp_path / "first", port, "allow_anonymous true\n"):
            await device.wait_online(5)
        # Broker gone: the device notices and keeps trying.
        await wait_until(lambda: device.link is not Link.ONLINE, "offline after the broker stopped")
        with run_mosquitto(tmp_path / "second", port, "allow_anonymous true\n"):
            await device.wait_online(5)
            assert device.stats.connects == 2
            assert device.stats.disconnects == 1
