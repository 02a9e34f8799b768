"""The broker's TLS as `bellhop devices ca` sets it up, on a real Mosquitto."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel, DeviceKind, Status
from bellhop_devices.sim import SimulatedHotel, load_provisioning
from bellhop_edge.provisioning import broker_files as broker
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.integration.edge.broker_helpers import (
    ProvisionedBroker,
    connect_error,
    gateway_broker,
    run_cli,
    wait_accepted,
)
from tests.integration.edge.conftest import wait_until
from tests.support.mosquitto import require_mosquitto

__all__ = ["gateway_broker"]  # the fixture, imported for the tests below


def _other_ca(path: Path) -> Path:
    """An unrelated CA: a client trusting only it must refuse the hotel's broker."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


async def test_tls_with_the_hotel_ca_works_and_another_ca_fails(
    gateway_broker: ProvisionedBroker, tmp_path: Path
) -> None:
    gb = gateway_broker
    username = f"gateway-{gb.hotel_id}"
    async with gb.client(username, gb.gateway_password()):
        pass
    wrong = _other_ca(tmp_path / "other-ca.crt")
    error = await connect_error(gb.client(username, gb.gateway_password(), ca=wrong))
    assert "CERTIFICATE_VERIFY_FAILED" in error
    # Without TLS on the TLS port there is no MQTT session either.
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(
            gb.host, gb.tls_port, username=username, password=gb.gateway_password(), timeout=1
        ):
            pass


def test_rendered_config_serves_plain_mqtt_on_loopback_only(
    gateway_broker: ProvisionedBroker,
) -> None:
    conf = (gateway_broker.broker_dir / "mosquitto.conf").read_text()
    listeners = [line.split() for line in conf.splitlines() if line.startswith("listener ")]
    assert ["listener", str(gateway_broker.port), "127.0.0.1"] in listeners
    assert "allow_anonymous false" in conf.splitlines()
    assert (gateway_broker.tls_dir / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (gateway_broker.tls_dir / "server.key").stat().st_mode & 0o007 == 0


async def test_ca_renewal_keeps_devices_trusting_the_same_ca(
    gateway_broker: ProvisionedBroker,
) -> None:
    gb = gateway_broker
    ca_before = (gb.tls_dir / "ca.crt").read_bytes()
    cert_before = (gb.tls_dir / "server.crt").read_bytes()
    result = gb.ca("--days", "30")
    assert "gateway.test.lan" in result.out
    assert (gb.tls_dir / "ca.crt").read_bytes() == ca_before
    assert (gb.tls_dir / "server.crt").read_bytes() != cert_before
    gb.stop()
    gb.start()  # a new certificate needs a restart
    async with gb.client(f"gateway-{gb.hotel_id}", gb.gateway_password()):
        pass


async def test_operator_ca_signs_the_broker_certificate(tmp_path: Path, hotel_id: str) -> None:
    require_mosquitto()
    gb = ProvisionedBroker(tmp_path, hotel_id)
    own_ca = _other_ca(tmp_path / "operator-ca.crt")
    result = gb.ca("--use-ca", own_ca, own_ca.with_suffix(".key"))
    assert not (gb.tls_dir / "ca.key").exists()  # the operator's key is not copied
    assert (gb.tls_dir / "ca.crt").read_bytes() == own_ca.read_bytes()
    assert "operator-ca.crt" in result.out
    gb.start()
    try:
        assert gb.devices("gateway").code == 0
        await wait_accepted(
            lambda: gb.client(f"gateway-{hotel_id}", gb.gateway_password(), ca=own_ca)
        )
    finally:
        gb.stop()


async def test_simulator_joins_over_tls_with_its_bundle(gateway_broker: ProvisionedBroker) -> None:
    gb = gateway_broker
    result = gb.devices(
        "add", "--room", "101", "--device", "r101-thermostat", "--kind", "thermostat"
    )
    assert result.code == 0, result.err
    provisioning = load_provisioning(gb.bundles / "r101-thermostat.json")
    assert provisioning.broker.tls
    assert provisioning.broker.ca is not None
    assert provisioning.broker.ca.read_text() == (gb.tls_dir / "ca.crt").read_text()
    status = codec.topic(gb.hotel_id, "r101-thermostat", Channel.STATUS)
    # The gateway's own account reads the device's birth message.
    async with gb.client(f"gateway-{gb.hotel_id}", gb.gateway_password()) as gateway:
        await gateway.subscribe(status, qos=1)
        hotel = SimulatedHotel.from_provisioning(provisioning, reconnect_delays=_no_delays)
        async with hotel, asyncio.timeout(5):
            await hotel.devices["r101-thermostat"].wait_online(5)
            async for message in gateway.messages:
                assert isinstance(message.payload, bytes)
                birth = codec.decode(status, message.payload, hotel_id=gb.hotel_id)
                assert isinstance(birth, Status)
                if birth.online:
                    assert birth.kind is DeviceKind.THERMOSTAT
                    return
    pytest.fail("no birth message")


def _no_delays() -> Iterator[float]:
    while True:
        yield 0.0


def test_another_ca_never_silently_replaces_the_hotel_ca(tmp_path: Path, hotel_id: str) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    gb.ca()
    hotel_ca = (gb.tls_dir / "ca.crt").read_bytes()
    other = _other_ca(tmp_path / "other-ca.crt")
    result = run_cli("ca", "--config", gb.config, "--use-ca", other, other.with_suffix(".key"))
    assert result.code == 1
    assert "holds another CA" in result.err
    assert (gb.tls_dir / "ca.crt").read_bytes() == hotel_ca


def test_the_deploy_example_is_what_the_gateway_renders() -> None:
    example = Path(__file__).resolve().parents[3] / "deploy" / "mosquitto" / "mosquitto.conf"
    etc = Path("/etc/mosquitto/bellhop")
    rendered = broker.render_config(
        port=1883,
        password_file=etc / "passwd",
        acl_file=etc / "acl",
        tls=broker.TlsListener(
            8883, etc / "tls/ca.crt", etc / "tls/server.crt", etc / "tls/server.key"
        ),
        persistence_dir=Path("/var/lib/mosquitto"),
    )

    def settings(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert settings(example.read_text()) == settings(rendered)


def test_ca_without_broker_names_creates_nothing(tmp_path: Path, hotel_id: str) -> None:
    gb = ProvisionedBroker(tmp_path, hotel_id)
    result = run_cli("ca", "--config", gb.config)
    assert result.code == 2
    assert "--hosts" in result.err
    assert not gb.tls_dir.exists()


async def test_gateway_takes_a_burst_over_tls_whole(gateway_broker: ProvisionedBroker) -> None:
    """TLS sockets hold decrypted bytes of their own; the gateway's reader must drain them."""
    from bellhop_edge.config import load_config
    from bellhop_edge.gateway import Gateway

    gb = gateway_broker
    result = gb.devices(
        "add", "--room", "101", "--device", "r101-env", "--kind", "environment_sensor"
    )
    assert result.code == 0, result.err
    spec = load_provisioning(gb.bundles / "r101-env.json").devices[0]
    username, password = spec.username, spec.password
    assert username is not None
    assert password is not None
    await wait_accepted(lambda: gb.client(username, password))  # once the reload applies
    config = load_config(
        gb.config,
        overrides={
            "mqtt": {
                "host": gb.host,
                "port": gb.tls_port,
                "username": f"gateway-{gb.hotel_id}",
                "password": gb.gateway_password(),
                "tls_ca": str(gb.tls_dir / "ca.crt"),
            },
            "api": {"listen": "127.0.0.1:0"},
        },
    )
    total = 5000
    base = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000) - total
    topic = codec.topic(gb.hotel_id, "r101-env", Channel.TELEMETRY)
    async with Gateway(config) as gateway:
        await asyncio.wait_for(gateway.link.connected.wait(), 10)
        async with gb.client(username, password) as device:
            for seq in range(1, total + 1):
                payload = b'{"v":1,"ts":%d,"seq":%d,"metrics":{"humidity":40}}' % (base + seq, seq)
                await device.publish(topic, payload, qos=0 if seq < total else 1)
        await wait_until(lambda: gateway.hotel.accepted >= total, timeout=20)
        await gateway.writer.flush()
        points = gateway.store.query_telemetry("r101-env", "humidity", 0, 2**62, 2 * total)
    assert len(points) == total
