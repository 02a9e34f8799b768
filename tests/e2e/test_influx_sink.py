"""The InfluxDB sink end to end, against a real server speaking InfluxDB's v2 write API.

A real gateway process, a real broker and device messages: every point and
device event reaches VictoriaMetrics with its tags, and so do the devices'
connectivity and an alert's changes (`device_event`, as Grafana reads them), also when the server is
stopped mid-run and started again (the gateway keeps them and resumes after
the last batch accepted). Each series and timestamp is there exactly as
applied: rewrites may store a sample twice, never a different or a missing one.
And a real relay writes what it applied from a gateway's bridge, tagged with the
hotel's organisation.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiomqtt
import pytest
from bellhop_devices import codec
from bellhop_devices.messages import Channel

from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import Credentials, MosquittoBroker
from tests.support.relay_process import RelayProcess, enrol_gateway
from tests.support.victoria import Sample, VictoriaMetrics, victoria_metrics

ENV = "r101-env"
DOOR = "r101-door"
ORG = "org-test"


def _client(mosquitto: MosquittoBroker, creds: Credentials, device_id: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        mosquitto.host,
        mosquitto.port,
        username=creds.username,
        password=creds.password,
        identifier=device_id,
        timeout=10,
    )


def _influx(vm: VictoriaMetrics) -> str:
    return "\n".join(
        [
            "[influx]",
            "enabled = true",
            f'url = "{vm.url}"',
            'token = "not-checked-by-this-server"',
            f'organisation = "{ORG}"',
            "batch_size = 300",
            "flush_interval_s = 0.1",
            "retry_min_s = 0.05",
            "retry_max_s = 0.5",
            "timeout_s = 2",
            "",
        ]
    )


async def _arrived(vm: VictoriaMetrics, expected: set[Sample], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        have = await asyncio.to_thread(vm.samples, "(telemetry|device_event)_.*")
        if expected <= set(have):
            return
        if time.monotonic() > deadline:
            missing = sorted(expected - set(have))[:5]
            raise TimeoutError(f"{what}: {len(expected - set(have))} missing, e.g. {missing}")
        await asyncio.sleep(0.2)


def _is_change(sample: Sample) -> bool:
    """A connectivity or alert change (their times are the gateway's, not the test's)."""
    return dict(sample[1]).get("event") in {"connectivity", "alert"}


async def _changes(vm: VictoriaMetrics, alerts: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        have = await asyncio.to_thread(vm.samples, "device_event_count")
        found = [k for k in have if dict(k[1]).get("event") == "alert"]
        if len(found) >= alerts:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {alerts} alert changes in InfluxDB")
        await asyncio.sleep(0.2)


def _lost(database: Path) -> int:
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT lost FROM influx_sink").fetchone()[0])
    finally:
        db.close()


@pytest.mark.timeout(120)
async def test_the_gateway_writes_every_point_once_across_an_influx_outage(
    tmp_path: Path, mosquitto: MosquittoBroker, hotel_id: str
) -> None:
    with victoria_metrics(tmp_path / "vm") as vm:
        gw = mosquitto.add_gateway(hotel_id)
        env = mosquitto.add_device(hotel_id, ENV)
        door_device = mosquitto.add_device(hotel_id, DOOR)
        mosquitto.reload()
        config = tmp_path / "edge.toml"
        write_config(
            config,
            hotel_id=hotel_id,
            mosquitto=mosquitto,
            gateway=gw,
            devices={ENV: "environment_sensor", DOOR: "door_sensor"},
            extra=_influx(vm),
        )
        gateway = EdgeProcess(config)
        base = int(time.time() * 1000) - 60_000
        room = {"hotel": hotel_id, "org": ORG, "room": "101"}
        tags = tuple(sorted({**room, "device": ENV, "kind": "environment_sensor"}.items()))
        door = {**room, "device": DOOR, "kind": "door_sensor", "event": "door"}
        door_tags = tuple(sorted(door.items()))
        expected: set[Sample] = set()
        gateway.start()
        try:
            async with (
                _client(mosquitto, env, ENV) as env_client,
                _client(mosquitto, door_device, DOOR) as door_client,
            ):
                await until(lambda: gateway.subscribed() >= 1, 30, "gateway subscribed")
                sent = 0

                async def send(count: int) -> None:
                    nonlocal sent
                    for _ in range(count):
                        sent += 1
                        ts = base + sent
                        metrics = {"temperature": 20 + sent % 7, "humidity": 40.5}
                        body = {"v": 1, "ts": ts, "seq": sent, "metrics": metrics}
                        await env_client.publish(
                            codec.topic(hotel_id, ENV, Channel.TELEMETRY),
                            json.dumps(body).encode(),
                            qos=1,
                        )
                        expected.add(("telemetry_temperature", tags, ts))
                        expected.add(("telemetry_humidity", tags, ts))
                        if sent % 100 == 0:
                            event = {"v": 1, "ts": ts, "kind": "door", "data": {"open": True}}
                            await door_client.publish(
                                codec.topic(hotel_id, DOOR, Channel.EVENT),
                                json.dumps(event).encode(),
                                qos=1,
                            )
                            expected.add(("device_event_count", door_tags, ts))
                            expected.add(("device_event_open", door_tags, ts))

                await send(600)
                await _arrived(vm, expected, 30, "before the outage")
                # InfluxDB away: the gateway keeps taking messages and keeps them for it.
                await asyncio.to_thread(vm.stop)
                await send(900)
                await until(lambda: gateway.committed() >= 2 * sent, 30, "outage's points stored")
                await asyncio.to_thread(vm.start)
                await send(300)
                # A breach raises an alert, the door closing clears it.
                ts = base + sent + 1
                breach_tags = tuple(sorted({**door, "event": "breach"}.items()))
                for n, body in enumerate(
                    (
                        {"v": 1, "ts": ts, "kind": "breach", "data": {"reason": "forced"}},
                        {"v": 1, "ts": ts + 1, "kind": "door", "data": {"open": False}},
                    ),
                    start=1,
                ):
                    await door_client.publish(
                        codec.topic(hotel_id, DOOR, Channel.EVENT),
                        json.dumps(body).encode(),
                        qos=1,
                    )
                    # Raised, then cleared: not in the same millisecond (one series).
                    await _changes(vm, n, 30)
                expected.add(("device_event_count", breach_tags, ts))
                expected.add(("device_event_reason", breach_tags, ts))
                expected.add(("device_event_count", door_tags, ts + 1))
                expected.add(("device_event_open", door_tags, ts + 1))
                await _arrived(vm, expected, 40, "after the outage")
            have = await asyncio.to_thread(vm.samples, "(telemetry|device_event)_.*")
            changes = {k: v for k, v in have.items() if _is_change(k)}
            # Exactly the points and events applied, each series and time once, each with
            # its value.
            assert set(have) - set(changes) == expected
            assert all(len(set(values)) == 1 for values in have.values())
            # Each device went online once: one connectivity point each, online.
            online = {
                dict(k[1])["device"]: v for k, v in changes.items() if k[0].endswith("online")
            }
            assert online == {ENV: [1.0], DOOR: [1.0]}
            # The alert's two changes (raised, cleared), tagged with its kind and severity
            # (VictoriaMetrics keeps a string field's series, not its text: `state` is checked
            # in the unit tests).
            alert = {**room, "device": DOOR, "kind": "door_sensor", "event": "alert"}
            alert |= {"alert": "breach", "severity": "critical"}
            raised = [k for k in changes if k[0] == "device_event_count" and dict(k[1]) == alert]
            assert len(raised) == 2
            assert _lost(gateway.database) == 0
        finally:
            gateway.stop()


@pytest.mark.timeout(120)
async def test_the_relay_writes_what_it_applied_from_a_bridge(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    with victoria_metrics(tmp_path / "vm") as vm:
        settings = {
            "influx": json.dumps(
                {
                    "enabled": True,
                    "url": vm.url,
                    "token": "not-checked-by-this-server",
                    "flush_interval_s": 0.1,
                    "retry_min_s": 0.05,
                    "retry_max_s": 0.5,
                }
            )
        }
        relay = RelayProcess(tmp_path / "relay", settings=settings)
        gateway: EdgeProcess | None = None
        try:
            await asyncio.to_thread(relay.start)
            tenant = await asyncio.to_thread(relay.tenant)
            hotel_id = tenant.hotel_id
            gw = mosquitto.add_gateway(hotel_id)
            env = mosquitto.add_device(hotel_id, ENV)
            mosquitto.reload()
            config = tmp_path / "gateway" / "edge.toml"
            config.parent.mkdir()
            bridge = "[bridge]\nreconnect_min_s = 0.05\nreconnect_max_s = 0.5\n"
            write_config(
                config,
                hotel_id=hotel_id,
                mosquitto=mosquitto,
                gateway=gw,
                devices={ENV: "environment_sensor", DOOR: "door_sensor"},
                extra=bridge,
            )
            await asyncio.to_thread(enrol_gateway, config, relay, tenant.enrolment_token())
            gateway = EdgeProcess(config)
            gateway.start()
            await until(lambda: relay.logged("snapshot applied") >= 1, 30, "bridged")
            tags = {"org": tenant.org_id, "hotel": hotel_id, "room": "101", "device": ENV}
            tags["kind"] = "environment_sensor"
            key = tuple(sorted(tags.items()))
            base = int(time.time() * 1000) - 10_000
            expected: set[Sample] = set()
            async with _client(mosquitto, env, ENV) as device:
                for n in range(1, 201):
                    body = {"v": 1, "ts": base + n, "seq": n, "metrics": {"humidity": n / 2}}
                    topic = codec.topic(hotel_id, ENV, Channel.TELEMETRY)
                    await device.publish(topic, json.dumps(body).encode(), qos=1)
                    expected.add(("telemetry_humidity", key, base + n))
            await _arrived(vm, expected, 40, "the relay's points")
            have = await asyncio.to_thread(vm.samples, "telemetry_.*")
            assert {k for k in have if k[1] == key} == expected
            assert have[("telemetry_humidity", key, base + 7)] == [3.5]
            # What InfluxDB accepted leaves the journal once committed; nothing was lost.
            sql = "SELECT count(*), (SELECT lost FROM influx_sink) FROM influx_journal"
            deadline = time.monotonic() + 10
            while (found := await relay.rows(sql)) != [(0, 0)] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert found == [(0, 0)]
            # The lag in the readiness answer.
            with relay.http() as http:
                ready = http.get("/readyz").json()
            assert ready["influx"]["running"] is True
            assert ready["influx"]["lost"] == 0
            assert ready["influx"]["written"] >= len(expected)
        finally:
            if gateway is not None:
                gateway.stop()
            relay.close()
