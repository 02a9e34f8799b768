"""`bellhop devices` end to end: real SQLite, real files, a real Mosquitto, real g++."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel, DeviceKind, Telemetry
from bellhop_devices.sim import load_provisioning
from bellhop_edge.config import load_config
from bellhop_edge.core.model import Room
from bellhop_edge.gateway import Gateway
from bellhop_edge.provisioning import (
    BrokerEndpoint,
    Bundle,
    SiteSettings,
    render_header,
)
from bellhop_edge.provisioning import broker_files as broker
from bellhop_edge.store import EdgeStore

from tests.integration.edge.broker_helpers import (
    ProvisionedBroker,
    collect_until,
    connect_error,
    gateway_broker,
    run_cli,
    subscribe,
    wait_accepted,
    wait_refused,
)
from tests.integration.edge.conftest import wait_until

__all__ = ["gateway_broker"]  # the fixture, imported for the tests below

REPO = Path(__file__).resolve().parents[3]
FIRMWARE = REPO / "firmware" / "esp32"


async def add(
    gb: ProvisionedBroker, device_id: str, kind: str = "thermostat", room: str = "101"
) -> str:
    """Add a device through the CLI; its password, from the simulator bundle.

    Returns once the reloaded broker accepts the new credentials.
    """
    result = gb.devices("add", "--room", room, "--device", device_id, "--kind", kind)
    assert result.code == 0, result.err
    password = load_provisioning(gb.bundles / f"{device_id}.json").devices[0].password
    assert password is not None
    await wait_accepted(lambda: device_client(gb, device_id, password))
    return password


def device_client(gb: ProvisionedBroker, device_id: str, password: str) -> aiomqtt.Client:
    return gb.client(device_id, password, identifier=f"{device_id}@{gb.hotel_id}")


async def wait_disconnected(client: aiomqtt.Client, seconds: float = 3.0) -> None:
    """Until the broker drops `client` (reading raises when it does)."""
    async with asyncio.timeout(seconds):
        with pytest.raises(aiomqtt.MqttError):
            async for _ in client.messages:
                pass


# -- the registry and the files ------------------------------------------------------------
def test_add_registers_device_and_room_and_keeps_only_the_hash(
    tmp_path: Path, hotel_id: str
) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    result = gb.devices(
        "add",
        "--room",
        "204",
        "--room-name",
        "Suite",
        "--floor",
        "2",
        "--device",
        "r204-light",
        "--kind",
        "light",
        reload=False,
    )
    assert result.code == 0, result.err
    assert "broker not reloaded" in result.out
    with EdgeStore.open(gb.data_dir / "edge.db") as store:
        assert store.list_rooms() == [Room("204", "Suite", 2)]
        device = store.get_device("r204-light")
        assert device is not None
        assert device.registered
        assert (device.room_id, device.kind) == ("204", DeviceKind.LIGHT)
    password = load_provisioning(gb.bundles / "r204-light.json").devices[0].password
    assert password is not None
    accounts = gb.broker_dir / "accounts.json"
    passwd = (gb.broker_dir / "passwd").read_text()
    for path in (accounts, gb.broker_dir / "passwd", gb.broker_dir / "acl"):
        assert password not in path.read_text()
    assert accounts.stat().st_mode & 0o777 == 0o600
    assert (gb.bundles / "r204-light.json").stat().st_mode & 0o777 == 0o600
    assert (gb.bundles / "r204-light.h").stat().st_mode & 0o777 == 0o600
    username, password_hash = passwd.strip().split(":", 1)
    assert username == "r204-light"
    assert broker.verify_password(password, password_hash)

    listing = run_cli("list", "--config", gb.config, "--json")
    rows = [json.loads(line) for line in listing.out.splitlines()]
    assert [(r["device_id"], r["room_id"], r["kind"], r["username"]) for r in rows] == [
        ("r204-light", "204", "light", "r204-light")
    ]


def test_adding_a_provisioned_device_again_is_refused_and_changes_nothing(
    tmp_path: Path, hotel_id: str
) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    add_args = ("add", "--room", "101", "--device", "r101-door", "--kind", "door_sensor")
    assert gb.devices(*add_args, reload=False).code == 0
    before = (gb.broker_dir / "passwd").read_text()
    again = gb.devices(*add_args, reload=False)
    assert again.code == 1
    assert "already provisioned: r101-door" in again.err
    assert (gb.broker_dir / "passwd").read_text() == before
    bad = gb.devices("add", "--room", "101", "--device", "bad/id", "--kind", "light", reload=False)
    assert bad.code == 1
    assert "device id" in bad.err


def test_a_corrupt_accounts_file_is_reported_and_left_alone(tmp_path: Path, hotel_id: str) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    accounts = gb.broker_dir / "accounts.json"
    accounts.parent.mkdir(parents=True, exist_ok=True)
    accounts.write_text('{"format": 1, "hotel_id": ')
    result = gb.devices("add", "--room", "1", "--device", "d1", "--kind", "light", reload=False)
    assert result.code == 1
    assert "cannot read the broker accounts" in result.err
    assert accounts.read_text() == '{"format": 1, "hotel_id": '
    assert not (gb.broker_dir / "passwd").exists()


def test_import_provisions_many_devices_in_one_simulator_file(
    tmp_path: Path, hotel_id: str
) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    csv = tmp_path / "devices.csv"
    csv.write_text(
        "device_id,room_id,kind,floor,name\n"
        "r101-thermostat,101,thermostat,1,Room 101\n"
        "r101-door,101,door_sensor\n"
        "r102-gas,102,gas_sensor,1\n"
    )
    result = gb.devices("import", "--file", csv, "--out", gb.bundles, reload=False)
    assert result.code == 0, result.err
    provisioning = load_provisioning(gb.bundles / "devices.json")
    assert provisioning.hotel_id == hotel_id
    assert [(d.device_id, d.room_id, d.kind) for d in provisioning.devices] == [
        ("r101-thermostat", "101", DeviceKind.THERMOSTAT),
        ("r101-door", "101", DeviceKind.DOOR_SENSOR),
        ("r102-gas", "102", DeviceKind.GAS_SENSOR),
    ]
    assert len({d.password for d in provisioning.devices}) == 3
    assert sorted(p.name for p in gb.bundles.glob("*.h")) == [
        "r101-door.h",
        "r101-thermostat.h",
        "r102-gas.h",
    ]
    with EdgeStore.open(gb.data_dir / "edge.db") as store:
        assert store.list_rooms() == [Room("101", "Room 101", 1), Room("102", "", 1)]


def test_a_failed_reload_still_hands_out_the_new_password(tmp_path: Path, hotel_id: str) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    gb.pid_file.write_text("not a pid\n")
    result = gb.devices("add", "--room", "1", "--device", "d1", "--kind", "light")
    assert result.code == 1
    assert "broker was not reloaded" in result.err
    password = load_provisioning(gb.bundles / "d1.json").devices[0].password
    assert password is not None
    _, password_hash = (gb.broker_dir / "passwd").read_text().strip().split(":", 1)
    assert broker.verify_password(password, password_hash)


def test_export_writes_the_bundle_without_a_password(tmp_path: Path, hotel_id: str) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    assert (
        gb.devices(
            "add", "--room", "7", "--device", "r7-light", "--kind", "light", reload=False
        ).code
        == 0
    )
    out = tmp_path / "export"
    result = run_cli(
        "export", "--config", gb.config, "--device", "r7-light", "--out", out, "--format", "json"
    )
    assert result.code == 0, result.err
    assert "rotate" in result.err
    spec = load_provisioning(out / "r7-light.json").devices[0]
    assert (spec.device_id, spec.username, spec.password) == ("r7-light", "r7-light", None)
    assert not list(out.glob("*.h"))
    missing = run_cli("export", "--config", gb.config, "--device", "nobody", "--out", out)
    assert missing.code == 1
    assert "no broker account" in missing.err


# -- on a running broker ------------------------------------------------------------------
async def test_devices_reach_only_their_own_topics_and_the_gateway_reads_all(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    pw_a, pw_b = await add(gb, "dev-a"), await add(gb, "dev-b", "light")
    hotel = gb.hotel_id
    broadcast = codec.broadcast_topic(hotel)
    async with (
        gb.client(f"gateway-{hotel}", gb.gateway_password()) as gateway,
        device_client(gb, "dev-a", pw_a) as dev_a,
        device_client(gb, "dev-b", pw_b) as dev_b,
    ):
        await subscribe(gateway, f"hotel/{hotel}/#")
        # A listens on B's commands by name, and on everything by wildcard.
        await subscribe(dev_a, codec.topic(hotel, "dev-b", Channel.CMD))
        await subscribe(dev_a, f"hotel/{hotel}/#")
        await subscribe(dev_b, codec.topic(hotel, "dev-b", Channel.CMD))
        await subscribe(dev_b, broadcast)  # for the marker
        for channel in (Channel.TELEMETRY, Channel.STATE, Channel.EVENT, Channel.ACK):
            await dev_a.publish(codec.topic(hotel, "dev-a", channel), b"{}", qos=1)
            await dev_a.publish(codec.topic(hotel, "dev-b", channel), b"{}", qos=1)
        await dev_a.publish(codec.topic(hotel, "dev-a", Channel.CMD), b"{}", qos=1)
        await gateway.publish(codec.topic(hotel, "dev-b", Channel.CMD), b"{}", qos=1)
        await gateway.publish(codec.topic(hotel, "dev-a", Channel.CMD), b"{}", qos=1)
        # The marker, last: what a client has not received when it arrives was never sent.
        await gateway.publish(broadcast, b"{}", qos=1)
        by_gateway = await collect_until(gateway, broadcast)
        by_a = await collect_until(dev_a, broadcast)
        by_b = await collect_until(dev_b, broadcast)
    from_a = [t for t in by_gateway if "/device/" in t and not t.endswith("/cmd")]
    assert sorted(from_a) == sorted(
        codec.topic(hotel, "dev-a", c)
        for c in (Channel.TELEMETRY, Channel.STATE, Channel.EVENT, Channel.ACK)
    )
    # A device may not command another, nor itself.
    assert by_gateway.count(codec.topic(hotel, "dev-a", Channel.CMD)) == 1
    assert by_a == [codec.topic(hotel, "dev-a", Channel.CMD), broadcast]
    assert by_b == [codec.topic(hotel, "dev-b", Channel.CMD), broadcast]


async def test_rotate_disconnects_the_old_password_and_the_new_one_works(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    old = await add(gb, "dev-rot")
    async with device_client(gb, "dev-rot", old) as online:
        await subscribe(online, codec.topic(gb.hotel_id, "dev-rot", Channel.CMD))
        result = gb.devices("rotate", "--device", "dev-rot")
        assert result.code == 0, result.err
        await wait_disconnected(online)
    new = load_provisioning(gb.bundles / "dev-rot.json").devices[0].password
    assert new is not None
    assert new != old
    assert "not authorized" in (await connect_error(device_client(gb, "dev-rot", old))).lower()
    async with device_client(gb, "dev-rot", new):
        pass
    header = (gb.bundles / "dev-rot.h").read_text()
    assert f'kMqttPassword[] = "{new}";' in header


async def test_revoke_disconnects_the_device_and_forgets_it(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    password = await add(gb, "dev-gone")
    keep = await add(gb, "dev-kept", "light")
    async with device_client(gb, "dev-gone", password) as online:
        await subscribe(online, codec.topic(gb.hotel_id, "dev-gone", Channel.CMD))
        result = gb.devices("revoke", "--device", "dev-gone")
        assert result.code == 0, result.err
        await wait_disconnected(online)
    assert (
        "not authorized" in (await connect_error(device_client(gb, "dev-gone", password))).lower()
    )
    async with device_client(gb, "dev-kept", keep):
        pass
    with EdgeStore.open(gb.data_dir / "edge.db") as store:
        assert [d.device_id for d in store.list_devices()] == ["dev-kept"]
    again = gb.devices("revoke", "--device", "dev-gone")
    assert again.code == 1
    assert "no broker account" in again.err


# -- the firmware header --------------------------------------------------------------------
PROBE = r"""
#include <cstdio>
#include <string_view>
#include "provisioning_config.h"
#include "bellhop/messages.hpp"
#include "bellhop/topics.hpp"
using namespace bellhop;
using namespace bellhop::provisioning;
static void put(const char* name, std::string_view v) {
  std::printf("%s=", name);
  for (unsigned char c : v) std::printf("%02x", c);
  std::printf("\n");
}
int main() {
  static_assert(BELLHOP_PROVISIONING_FORMAT == 1);
  if (!valid_id(kHotelId) || !valid_id(kDeviceId) || !device_kind_from(kDeviceKind)) return 3;
  TopicBuffer status;
  if (build_topic(kHotelId, kDeviceId, Channel::kStatus, status) != Reject::kNone) return 4;
  put("topic", status.view());
  put("host", kMqttHost);
  put("username", kMqttUsername);
  put("password", kMqttPassword);
  put("ca", kCaCert);
  put("wifi_ssid", kWifiSsid);
  put("wifi_password", kWifiPassword);
  put("ntp", kNtpServer);
  put("tz", kTimezone);
  std::printf("port=%u\n", kMqttPort);
  return 0;
}
"""


@pytest.fixture
def compiler() -> str:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.fail("g++ is needed to check the firmware header (apt-get install g++)")
    return gxx


def test_firmware_header_compiles_against_the_firmware_and_carries_the_bundle(
    tmp_path: Path, hotel_id: str, compiler: str
) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    ca_pem = (gb.tls_dir / "ca.crt").read_text()
    bundle = Bundle(
        hotel_id=hotel_id,
        device_id="r101-thermostat",
        room_id="101",
        kind=DeviceKind.THERMOSTAT,
        username="r101-thermostat",
        password=broker.generate_password(),
        broker=BrokerEndpoint("gateway.test.lan", 8883),
        ca_pem=ca_pem,
    )
    # Characters a C string literal must escape, and UTF-8 in the SSID.
    site = SiteSettings(
        timezone="CET-1CEST,M3.5.0,M10.5.0/3",
        wifi_ssid='Hôtel "guests" ??=',
        wifi_password='p\\a"s\ts',
        ntp_server="",
    )
    include = tmp_path / "include"
    include.mkdir()
    (include / "provisioning.h").write_text(render_header(bundle, site))
    (tmp_path / "probe.cpp").write_text(PROBE)
    core = FIRMWARE / "lib" / "bellhop_core"
    subprocess.run(
        [
            compiler,
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{include}",
            f"-I{FIRMWARE / 'src'}",
            f"-I{core / 'include'}",
            str(tmp_path / "probe.cpp"),
            str(core / "src" / "topics.cpp"),
            str(core / "src" / "messages.cpp"),
            "-o",
            str(tmp_path / "probe"),
        ],
        check=True,
        timeout=60,
    )
    run = subprocess.run([tmp_path / "probe"], capture_output=True, text=True, check=True)
    values = dict(line.split("=", 1) for line in run.stdout.splitlines())
    text = {k: bytes.fromhex(v).decode() for k, v in values.items() if k != "port"}
    assert text == {
        "topic": codec.topic(hotel_id, "r101-thermostat", Channel.STATUS),
        "host": "gateway.test.lan",
        "username": "r101-thermostat",
        "password": bundle.password,
        "ca": ca_pem.strip() + "\n",
        "wifi_ssid": site.wifi_ssid,
        "wifi_password": site.wifi_password,
        "ntp": "",
        "tz": site.timezone,
    }
    assert values["port"] == "8883"


async def test_gateway_rotation_locks_out_the_old_gateway_password(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    username, old = f"gateway-{gb.hotel_id}", gb.gateway_password()
    refused = gb.devices("gateway")
    assert refused.code == 1
    assert "rotate it" in refused.err
    assert gb.gateway_password() == old
    assert gb.devices("gateway", "--rotate").code == 0
    assert gb.gateway_password() != old
    assert (gb.broker_dir / "gateway.secret").stat().st_mode & 0o777 == 0o600
    await wait_refused(lambda: gb.client(username, old), "not authorized")
    # The reload that refuses the old password is the one that installed the new.
    async with gb.client(username, gb.gateway_password()):
        pass


async def test_revoke_can_keep_the_registry_entry(gateway_broker: ProvisionedBroker) -> None:
    gb = gateway_broker
    password = await add(gb, "dev-spare")
    result = gb.devices("revoke", "--device", "dev-spare", "--keep-registered")
    assert result.code == 0, result.err
    await wait_refused(lambda: device_client(gb, "dev-spare", password), "not authorized")
    listing = run_cli("list", "--config", gb.config)
    assert "dev-spare" in listing.out
    assert "NO CREDENTIALS" in listing.out
    # Re-adding a registered device without credentials issues new ones.
    assert await add(gb, "dev-spare") != password


async def test_sync_restores_the_broker_files_from_the_accounts(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    password = await add(gb, "dev-restored")
    expected = (gb.broker_dir / "acl").read_text()
    (gb.broker_dir / "passwd").write_text("")
    (gb.broker_dir / "acl").write_text("")
    gb.reload()
    await wait_refused(lambda: device_client(gb, "dev-restored", password), "not authorized")
    result = run_cli("sync", "--config", gb.config, "--broker-pid-file", gb.pid_file)
    assert result.code == 0, result.err
    assert (gb.broker_dir / "acl").read_text() == expected
    await wait_accepted(lambda: device_client(gb, "dev-restored", password))


# -- a running gateway -----------------------------------------------------------------------
async def test_a_running_gateway_takes_devices_added_and_revoked_beside_it(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    config = load_config(
        gb.config,
        overrides={
            "mqtt": {
                "host": gb.host,
                "port": gb.port,  # plain MQTT, loopback only
                "username": f"gateway-{gb.hotel_id}",
                "password_file": str(gb.broker_dir / "gateway.secret"),
            },
            "api": {"listen": "127.0.0.1:0"},
        },
    )

    def registered() -> list[str]:
        return [d.device_id for d in gateway.hotel.list_devices()]

    deadline = 6.0  # the gateway polls the registry every 2 s
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 5)
        password = await add(gb, "r301-light", "light", room="301")
        await wait_until(lambda: registered() == ["r301-light"], deadline)
        assert gateway.hotel.device("r301-light").room_id == "301"
        async with device_client(gb, "r301-light", password) as device:
            await device.publish(
                codec.topic(gb.hotel_id, "r301-light", Channel.TELEMETRY),
                codec.encode(Telemetry("r301-light", int(time.time() * 1000), 1, {"lux": 120.0})),
                qos=1,
            )
            await wait_until(lambda: "r301-light" in gateway.hotel.last_seen, deadline)
        # The gateway's own record of the device going online is committed first:
        # a write still in its queue would re-create the revoked device.
        await gateway.writer.flush()
        assert gb.devices("revoke", "--device", "r301-light").code == 0
        await wait_until(lambda: registered() == [], deadline)


def test_plain_bundles_are_for_the_simulator_only(tmp_path: Path, hotel_id: str) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    result = run_cli(
        "add", "--config", gb.config, "--no-reload", "--plain", "--broker-host", "127.0.0.1",
        "--broker-port", "1883", "--out", gb.bundles, "--room", "1", "--device", "lab-1",
        "--kind", "light",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert "the firmware speaks TLS only" in result.err
    provisioning = load_provisioning(gb.bundles / "lab-1.json")
    assert (provisioning.broker.host, provisioning.broker.port) == ("127.0.0.1", 1883)
    assert (provisioning.broker.tls, provisioning.broker.ca) == (False, None)
    assert not list(gb.bundles.glob("*.h"))
