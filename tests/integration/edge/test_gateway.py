"""The gateway end to end on the LAN: real broker, real gRPC, real SQLite."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import grpc
import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2
from bellhop_devices.messages import Channel
from bellhop_edge.mqtt.link import CONNECTED_WAIT_S
from google.protobuf import duration_pb2, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.integration.edge.conftest import FakeDevice, Harness


def now_ms() -> int:
    return int(time.time() * 1000)


def params(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def test_telemetry_and_state_reach_the_lan_api(harness: Harness) -> None:
    async with harness.device_client("r101-thermostat") as client:
        device = FakeDevice(harness.hotel_id, "r101-thermostat", client)
        await device.send(
            Channel.STATUS,
            {"v": 1, "state": "online", "ts": now_ms(), "kind": "thermostat", "firmware": "1.0.0"},
            retain=True,
        )
        for seq in range(1, 6):
            await device.send(
                Channel.TELEMETRY,
                {"v": 1, "ts": now_ms() + seq, "seq": seq, "metrics": {"temperature": 20.0 + seq}},
            )
        await device.send(
            Channel.STATE,
            {"v": 1, "ts": now_ms(), "values": {"setpoint": 21.0, "mode": "heat"}},
            retain=True,
        )
        await harness.wait_for(lambda: harness.gateway.hotel.accepted >= 7)

    reply = await harness.stub.GetDevice(
        lan_pb2.GetDeviceRequest(device_id="r101-thermostat"), metadata=harness.auth
    )
    assert reply.device.connectivity == common_pb2.CONNECTIVITY_ONLINE
    assert reply.device.firmware == "1.0.0"
    assert reply.reported.values["setpoint"] == 21.0

    desired = await harness.stub.SetDesiredState(
        lan_pb2.SetDesiredStateRequest(device_id="r101-thermostat", values=params(setpoint=23.0)),
        metadata=harness.auth,
    )
    assert desired.desired.version == 1
    assert desired.desired.updated_by == "alice"
    reply = await harness.stub.GetDevice(
        lan_pb2.GetDeviceRequest(device_id="r101-thermostat"), metadata=harness.auth
    )
    assert dict(reply.delta) == {"setpoint": 23.0}

    history = await harness.stub.QueryTelemetry(
        lan_pb2.QueryTelemetryRequest(device_id="r101-thermostat", metric="temperature"),
        metadata=harness.auth,
    )
    assert [p.value for p in history.points] == [21.0, 22.0, 23.0, 24.0, 25.0]


def set_light(command_id: str, *, on: bool) -> lan_pb2.SendCommandRequest:
    return lan_pb2.SendCommandRequest(
        device_id="r101-light", name="set_light", params=params(on=on), command_id=command_id
    )


async def test_command_round_trip_is_executed_once_per_id(harness: Harness) -> None:
    async with harness.device_client("r101-light") as client:
        device = FakeDevice(harness.hotel_id, "r101-light", client)
        async with device.serving():
            first = await harness.stub.SendCommand(
                set_light("cmd-1", on=True), metadata=harness.auth, timeout=5
            )
            again = await harness.stub.SendCommand(
                set_light("cmd-1", on=True), metadata=harness.auth, timeout=5
            )
            # The broker keeps the order of the gateway's commands: once a later
            # one is answered, a second copy of cmd-1 would have arrived first.
            after = await harness.stub.SendCommand(
                set_light("cmd-2", on=False), metadata=harness.auth, timeout=5
            )
    assert first.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
    assert first.result.result["on"] is True
    assert again.result == first.result
    assert after.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
    assert [c["id"] for c in device.commands] == ["cmd-1", "cmd-2"]


async def test_the_broker_connection_has_nagle_off(harness: Harness) -> None:
    # A command and the PUBACK before it are two small writes: with Nagle's
    # algorithm on, the second waits for the broker's delayed ACK (~40 ms).
    # The latency itself is bench/lan_command.py's (p50 about 2 ms; 40 with Nagle).
    sock: Any = harness.gateway.link.socket()  # the read buffer, which forwards socket calls
    assert sock is not None
    assert sock.getpeername()[1] == harness.mosquitto.port
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


async def test_unanswered_command_times_out_and_is_never_sent_after_expiry(
    harness: Harness,
) -> None:
    ttl_s = 0.6

    def answer(command: dict[str, Any]) -> dict[str, Any] | None:
        if command["id"] == "cmd-slow":
            return None  # never answered
        return {"id": command["id"], "status": "ok", "result": {}}

    async with harness.device_client("r101-light") as client:
        device = FakeDevice(harness.hotel_id, "r101-light", client, answer=answer)
        async with device.serving():
            request = lan_pb2.SendCommandRequest(
                device_id="r101-light",
                name="set_light",
                params=params(on=False),
                command_id="cmd-slow",
                ttl=duration_pb2.Duration(nanos=int(ttl_s * 1e9)),
                timeout=duration_pb2.Duration(nanos=200_000_000),
            )
            first = await harness.stub.SendCommand(request, metadata=harness.auth, timeout=5)
            answered = time.time()
            assert first.result.status == common_pb2.COMMAND_STATUS_TIMED_OUT
            # The expiry is the input under test: the gateway set it to its clock
            # at the request (before it answered) plus the ttl. Wait until that
            # deadline has surely passed, with a margin.
            await asyncio.sleep(max(0.0, answered + ttl_s + 0.1 - time.time()))
            late = await harness.stub.SendCommand(request, metadata=harness.auth, timeout=5)
            # Commands reach the device in the order sent: once this one is
            # answered, a late copy of cmd-slow would have arrived before it.
            after = await harness.stub.SendCommand(
                set_light("cmd-after", on=True), metadata=harness.auth, timeout=5
            )
    assert late.result.status == common_pb2.COMMAND_STATUS_EXPIRED
    assert after.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
    assert [c["id"] for c in device.commands] == ["cmd-slow", "cmd-after"]


async def test_calls_need_a_token_and_a_role(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.ListRooms(lan_pb2.ListRoomsRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.ListRooms(
            lan_pb2.ListRoomsRequest(), metadata=(("authorization", "Bearer bht_forged"),)
        )
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    rooms = await harness.stub.ListRooms(lan_pb2.ListRoomsRequest(), metadata=harness.viewer)
    assert [r.room_id for r in rooms.rooms] == ["101", "102"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.SendCommand(
            lan_pb2.SendCommandRequest(device_id="r101-light", name="set_light"),
            metadata=harness.viewer,
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.GetDevice(
            lan_pb2.GetDeviceRequest(device_id="nope"), metadata=harness.auth
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_and_reflection_need_no_token(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="bellhop.lan.v1.LanService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    response = await call.read()
    assert response is not grpc.aio.EOF
    names = {s.name for s in response.list_services_response.service}
    assert "bellhop.lan.v1.LanService" in names
    call.cancel()


async def test_bad_input_is_counted_and_never_stored(harness: Harness) -> None:
    async with harness.device_client("r101-thermostat") as client:
        device = FakeDevice(harness.hotel_id, "r101-thermostat", client)
        await device.send(Channel.TELEMETRY, b"{not json")
        await device.send(Channel.TELEMETRY, {"v": 1, "ts": "yesterday", "seq": 1, "metrics": {}})
        await device.send(Channel.TELEMETRY, b"{" + b" " * 20_000 + b"}")
        await device.send(
            Channel.TELEMETRY, {"v": 9, "ts": now_ms(), "seq": 1, "metrics": {"temperature": 1.0}}
        )
        await device.send(
            Channel.TELEMETRY, {"v": 1, "ts": now_ms(), "seq": 2, "metrics": {"temperature": 22.5}}
        )
        await harness.wait_for(
            lambda: (
                harness.gateway.hotel.accepted >= 1
                and sum(harness.gateway.hotel.rejected.values()) >= 4
            )
        )
    async with harness.device_client("stranger") as client:
        stranger = FakeDevice(harness.hotel_id, "stranger", client)
        await stranger.send(
            Channel.TELEMETRY, {"v": 1, "ts": now_ms(), "seq": 1, "metrics": {"temperature": 99.0}}
        )
        await harness.wait_for(lambda: harness.gateway.hotel.rejected["unknown_device"] >= 1)

    status = await harness.stub.GetGatewayStatus(
        lan_pb2.GetGatewayStatusRequest(), metadata=harness.auth
    )
    assert status.broker_connected
    assert sum(status.rejected.values()) >= 5
    assert status.rejected["unknown_device"] == 1
    devices = await harness.stub.ListDevices(
        lan_pb2.ListDevicesRequest(include_unknown=True), metadata=harness.auth
    )
    unknown = [d for d in devices.devices if not d.registered]
    assert [d.device_id for d in unknown] == ["stranger"]
    history = await harness.stub.QueryTelemetry(
        lan_pb2.QueryTelemetryRequest(device_id="r101-thermostat", metric="temperature"),
        metadata=harness.auth,
    )
    assert [p.value for p in history.points] == [22.5]


async def test_alerts_raise_once_and_are_acknowledged_with_a_note(harness: Harness) -> None:
    async with harness.device_client("r102-env") as client:
        device = FakeDevice(harness.hotel_id, "r102-env", client)
        for seq in range(1, 4):
            await device.send(
                Channel.TELEMETRY,
                {"v": 1, "ts": now_ms() + seq, "seq": seq, "metrics": {"temperature": 35.0}},
            )
        await harness.wait_for(lambda: harness.gateway.hotel.accepted >= 3)
    alerts = await harness.stub.ListAlerts(lan_pb2.ListAlertsRequest(), metadata=harness.auth)
    hot = [a for a in alerts.alerts if a.kind == common_pb2.ALERT_KIND_TEMPERATURE_OUT_OF_RANGE]
    assert len(hot) == 1
    assert hot[0].state == common_pb2.ALERT_STATE_RAISED
    assert hot[0].room_id == "102"
    acked = await harness.stub.AcknowledgeAlert(
        lan_pb2.AcknowledgeAlertRequest(alert_id=hot[0].alert_id, note="window open, closing it"),
        metadata=harness.auth,
    )
    assert acked.alert.state == common_pb2.ALERT_STATE_ACKNOWLEDGED
    assert acked.alert.acknowledged_by == "alice"
    assert acked.alert.note == "window open, closing it"


async def test_will_and_silence_take_devices_offline_with_an_alert(harness: Harness) -> None:
    watch = harness.stub.WatchEvents(
        lan_pb2.WatchEventsRequest(room_id="101"), metadata=harness.auth
    )
    seen: list[lan_pb2.WatchEventsResponse] = []

    async def follow() -> None:
        async for item in watch:
            seen.append(item)

    follower = asyncio.create_task(follow())
    await harness.wait_for(lambda: harness.gateway.bus.active)  # the stream is subscribed
    async with harness.device_client("r101-door") as client:
        device = FakeDevice(harness.hotel_id, "r101-door", client)
        await device.send(
            Channel.STATUS,
            {"v": 1, "state": "online", "ts": now_ms(), "kind": "door_sensor", "firmware": "1.0.0"},
            retain=True,
        )
        await harness.wait_for(lambda: harness.gateway.hotel.online >= 1)
        await device.send(Channel.STATUS, b"offline", retain=True)  # what the Will says
        await harness.wait_for(lambda: harness.gateway.hotel.online == 0)
    # Silence: online again, then nothing for longer than the heartbeat timeout (2 s).
    async with harness.device_client("r101-door") as client:
        device = FakeDevice(harness.hotel_id, "r101-door", client)
        await device.send(
            Channel.STATUS,
            {"v": 1, "state": "online", "ts": now_ms(), "kind": "door_sensor", "firmware": "1.0.0"},
            retain=True,
        )
        await harness.wait_for(lambda: harness.gateway.hotel.online == 1)
    await harness.wait_for(lambda: harness.gateway.hotel.online == 0, timeout=5)
    await harness.wait_for(
        lambda: any(
            s.HasField("alert") and s.alert.kind == common_pb2.ALERT_KIND_DEVICE_OFFLINE
            for s in seen
        )
    )
    follower.cancel()
    statuses = [s.status.connectivity for s in seen if s.HasField("status")]
    assert statuses[:2] == [common_pb2.CONNECTIVITY_ONLINE, common_pb2.CONNECTIVITY_OFFLINE]


async def test_lan_api_serves_through_a_broker_restart(harness: Harness) -> None:
    harness.mosquitto.stop()
    await harness.wait_for(lambda: not harness.gateway.link.connected.is_set())
    rooms = await harness.stub.ListRooms(
        lan_pb2.ListRoomsRequest(), metadata=harness.auth, timeout=2
    )
    assert len(rooms.rooms) == 2
    status = await harness.stub.GetGatewayStatus(
        lan_pb2.GetGatewayStatusRequest(), metadata=harness.auth
    )
    assert not status.broker_connected
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.SendCommand(
            lan_pb2.SendCommandRequest(device_id="r101-light", name="set_light"),
            metadata=harness.auth,
            timeout=10,  # the gateway waits CONNECTED_WAIT_S for the broker, then says so
        )
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    started = time.monotonic()  # past that grace, the next command fails at once
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await harness.stub.SendCommand(
            lan_pb2.SendCommandRequest(device_id="r101-light", name="set_light"),
            metadata=harness.auth,
            timeout=10,
        )
    assert again.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < CONNECTED_WAIT_S
    harness.mosquitto.start()
    await harness.wait_for(harness.gateway.link.connected.is_set, timeout=10)
    async with harness.device_client("r101-thermostat") as client:
        device = FakeDevice(harness.hotel_id, "r101-thermostat", client)
        await device.send(
            Channel.TELEMETRY, {"v": 1, "ts": now_ms(), "seq": 1, "metrics": {"temperature": 21.0}}
        )
        await harness.wait_for(lambda: harness.gateway.hotel.accepted >= 1)


async def test_registry_changes_beside_the_gateway_are_picked_up(harness: Harness) -> None:
    from bellhop_devices.messages import DeviceKind
    from bellhop_edge.core.model import Device, Room
    from bellhop_edge.store import EdgeStore

    with EdgeStore.open(harness.gateway.config.database_path) as store:
        store.upsert_room(Room("103", "Room 103", 1))
        store.upsert_device(Device("r103-light", "103", DeviceKind.LIGHT, registered=True))
        store.remove_device("r102-env")
        store.bump_registry_version()
    await harness.wait_for(lambda: "r103-light" in harness.gateway.hotel.devices, timeout=5)
    devices = await harness.stub.ListDevices(lan_pb2.ListDevicesRequest(), metadata=harness.auth)
    ids = {d.device_id for d in devices.devices}
    assert "r103-light" in ids
    assert "r102-env" not in ids


def fleet(fleet_id: str) -> lan_pb2.SendFleetCommandRequest:
    return lan_pb2.SendFleetCommandRequest(
        target=lan_pb2.FleetTarget(room_ids=["101"]),
        name="ping",
        fleet_id=fleet_id,
        timeout=duration_pb2.Duration(seconds=2),
    )


async def test_fleet_command_reports_per_device_and_never_runs_twice(harness: Harness) -> None:
    async with (
        harness.device_client("r101-light") as light_client,
        harness.device_client("r101-thermostat") as thermostat_client,
        harness.device_client("r101-door") as door_client,
    ):
        light = FakeDevice(harness.hotel_id, "r101-light", light_client)
        thermostat = FakeDevice(harness.hotel_id, "r101-thermostat", thermostat_client)
        door = FakeDevice(
            harness.hotel_id,
            "r101-door",
            door_client,
            answer=lambda c: {
                "id": c["id"],
                "status": "error",
                "error": "bad_params: no such command",
            },
        )
        async with light.serving(), thermostat.serving(), door.serving():
            first = await harness.stub.SendFleetCommand(
                fleet("fleet-1"), metadata=harness.auth, timeout=10
            )
            again = await harness.stub.SendFleetCommand(
                fleet("fleet-1"), metadata=harness.auth, timeout=10
            )
            # Once a later fleet is answered, a second copy of fleet-1 would
            # have reached each device before it.
            after = await harness.stub.SendFleetCommand(
                fleet("fleet-2"), metadata=harness.auth, timeout=10
            )
    assert first.targeted == 3
    assert (first.succeeded, first.failed, first.timed_out) == (2, 1, 0)
    assert {r.device_id for r in first.results} == {"r101-light", "r101-thermostat", "r101-door"}
    assert (again.succeeded, again.failed) == (2, 1)
    assert (after.succeeded, after.failed) == (2, 1)
    for device in (light, thermostat, door):
        assert [c["id"].split(".")[0] for c in device.commands] == ["fleet-1", "fleet-2"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.SendFleetCommand(
            lan_pb2.SendFleetCommandRequest(
                target=lan_pb2.FleetTarget(room_ids=["999"]), name="ping"
            ),
            metadata=harness.auth,
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


# Doors open for longer than 1.5 s raise an alert at a liveness tick: the first
# tick after the outage shows itself by raising one.
@pytest.mark.gateway(rules={"door_open_max_s": 1.5})
async def test_a_broker_outage_does_not_mark_every_device_offline(harness: Harness) -> None:
    from bellhop_edge.core.model import AlertKind, Connectivity

    gateway = harness.gateway
    async with (
        harness.device_client("r101-light") as light_client,
        harness.device_client("r101-door") as door_client,
    ):
        light = FakeDevice(harness.hotel_id, "r101-light", light_client)
        door = FakeDevice(harness.hotel_id, "r101-door", door_client)
        await light.send(
            Channel.STATUS,
            {"v": 1, "state": "online", "ts": now_ms(), "kind": "light", "firmware": "1.0.0"},
        )
        await door.send(
            Channel.EVENT, {"v": 1, "ts": now_ms(), "kind": "door", "data": {"open": True}}
        )
        await harness.wait_for(lambda: gateway.hotel.online == 2 and gateway.hotel.accepted >= 2)
    harness.mosquitto.stop()
    await harness.wait_for(lambda: not gateway.link.connected.is_set())
    assert not gateway.ingest.alerts.open_alerts(), "the door alert must come after the outage"
    # The heartbeat timeout is the input under test: the outage lasts until both
    # devices have been silent for longer than it (2 s), with a margin.
    silent_until = max(gateway.hotel.last_seen[d] for d in ("r101-light", "r101-door"))
    timeout_ms = gateway.config.liveness.heartbeat_timeout_s * 1000
    await asyncio.sleep(max(0.0, (silent_until + timeout_ms + 500 - now_ms()) / 1000))
    harness.mosquitto.start()
    await harness.wait_for(gateway.link.connected.is_set, timeout=10)

    def kinds() -> list[AlertKind]:
        return [a.kind for a in gateway.ingest.alerts.open_alerts()]

    # The door-left-open alert is raised by the first liveness tick after the
    # outage, the one that would have found both devices silent for too long.
    await harness.wait_for(lambda: AlertKind.DOOR_LEFT_OPEN in kinds())
    assert kinds() == [AlertKind.DOOR_LEFT_OPEN]
    assert gateway.hotel.device("r101-light").connectivity is Connectivity.ONLINE
    assert gateway.hotel.device("r101-door").connectivity is Connectivity.ONLINE
