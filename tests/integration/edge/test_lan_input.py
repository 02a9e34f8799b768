"""The LAN API refuses what it cannot honour, naming the field, and keeps serving.

Each case is one that a staff client could send by mistake or malice; before
these checks some of them cut every device off (an oversize command made the
broker drop the gateway) or answered a Python exception's text.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2
from google.protobuf import duration_pb2, struct_pb2

from tests.integration.edge.conftest import FakeDevice, Harness


def params(**values: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


async def refused(harness: Harness, call: Any, request: Any, field: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(request, metadata=harness.auth, timeout=5)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    details = info.value.details() or ""
    assert details.startswith(f"{field}"), details
    assert "Traceback" not in details
    assert "Error" not in details  # no Python exception names
    return details


COMMANDS = [
    ("70 KB of params", {"params": params(blob="x" * 70_000)}, "params.blob"),
    ("3 MB of params", {"params": params(**{f"k{i}": "y" * 128 for i in range(24_000)})}, "params"),
    ("40 params", {"params": params(**{f"p{i}": i for i in range(40)})}, "params"),
    ("a bad name", {"name": "Bad Name!"}, "name"),
    ("a bad command id", {"command_id": "bad id/#"}, "command_id"),
    # A `:` is for the relay's own items ("ack:<alert id>"): never a command's id.
    ("a command id with a colon", {"command_id": "ack:al-1"}, "command_id"),
    ("a nested param", {"params": params(inner={"a": 1})}, "params.inner"),
    ("a control character", {"params": params(text="a\x00b")}, "params.text"),
    ("a ttl of 10^14 s", {"ttl": duration_pb2.Duration(seconds=10**14)}, "ttl"),
    ("a negative timeout", {"timeout": duration_pb2.Duration(seconds=-1)}, "timeout"),
]


@pytest.mark.parametrize(("case", "fields", "field"), COMMANDS, ids=[c[0] for c in COMMANDS])
async def test_a_command_the_protocol_would_refuse_never_reaches_the_device(
    harness: Harness, case: str, fields: dict[str, Any], field: str
) -> None:
    connects = harness.gateway.link.connects
    async with harness.device_client("r101-light") as client:
        device = FakeDevice(harness.hotel_id, "r101-light", client)
        async with device.serving():
            bad = lan_pb2.SendCommandRequest(
                device_id="r101-light", name="set_light", params=params(on=True)
            )
            for key, value in fields.items():
                if isinstance(value, struct_pb2.Struct | duration_pb2.Duration):
                    getattr(bad, key).CopyFrom(value)
                else:
                    setattr(bad, key, value)
            await refused(harness, harness.stub.SendCommand, bad, field)
            # A marker after it: a good command goes through, and is all the device saw.
            good = lan_pb2.SendCommandRequest(
                device_id="r101-light", name="set_light", params=params(on=True), command_id="ok-1"
            )
            reply = await harness.stub.SendCommand(good, metadata=harness.auth, timeout=5)
    assert reply.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
    assert [c["id"] for c in device.commands] == ["ok-1"]
    assert harness.gateway.link.connects == connects, "the broker dropped the gateway"


async def test_fleet_commands_check_their_limits_and_targets(harness: Harness) -> None:
    def fleet(**fields: Any) -> lan_pb2.SendFleetCommandRequest:
        request = lan_pb2.SendFleetCommandRequest(name="ping")
        request.target.all_devices = True
        for key, value in fields.items():
            setattr(request, key, value)
        return request

    call = harness.stub.SendFleetCommand
    await refused(harness, call, fleet(max_in_flight=-1), "max_in_flight")
    await refused(harness, call, fleet(fleet_id="f" * 41), "fleet_id")
    await refused(harness, call, fleet(fleet_id="night:1"), "fleet_id")
    unknown_kind = lan_pb2.SendFleetCommandRequest(name="ping")
    unknown_kind.target.kinds.append(common_pb2.DeviceKind.ValueType(99))
    await refused(harness, call, unknown_kind, "target.kinds[0]")
    bad_room = lan_pb2.SendFleetCommandRequest(name="ping")
    bad_room.target.room_ids.append("has space")
    await refused(harness, call, bad_room, "target.room_ids[0]")


async def test_desired_state_holds_only_what_the_device_kind_can_do(harness: Harness) -> None:
    call = harness.stub.SetDesiredState

    def desired(device_id: str, **values: Any) -> lan_pb2.SetDesiredStateRequest:
        return lan_pb2.SetDesiredStateRequest(device_id=device_id, values=params(**values))

    big = {f"k{i}": "z" * 100 for i in range(30)}
    await refused(harness, call, desired("r101-thermostat", **big), "values")
    await refused(harness, call, desired("r101-thermostat", colour="red"), "values.colour")
    await refused(harness, call, desired("r101-thermostat", setpoint=80), "values.setpoint")
    await refused(harness, call, desired("r101-thermostat", mode="party"), "values.mode")
    await refused(harness, call, desired("r101-light", brightness=50.5), "values.brightness")
    await refused(harness, call, desired("r101-light", on={"nested": True}), "values.on")
    await refused(harness, call, desired("r101-door", open=True), "values.open")  # a sensor
    negative = lan_pb2.SetDesiredStateRequest(
        device_id="r101-light", values=params(on=True), expected_version=-1
    )
    await refused(harness, call, negative, "expected_version")
    ok = await call(desired("r101-thermostat", setpoint=21.5, mode="heat"), metadata=harness.auth)
    assert dict(ok.desired.values) == {"setpoint": 21.5, "mode": "heat"}
    light = await call(desired("r101-light", brightness=40, on=True), metadata=harness.auth)
    assert light.desired.values["brightness"] == 40
    device = await harness.stub.GetDevice(
        lan_pb2.GetDeviceRequest(device_id="r101-thermostat"), metadata=harness.auth, timeout=5
    )
    assert device.desired.version == 1


async def test_reads_check_their_ids_limits_and_times(harness: Harness) -> None:
    stub = harness.stub
    await refused(harness, stub.GetDevice, lan_pb2.GetDeviceRequest(device_id="a/b"), "device_id")
    await refused(harness, stub.ListDevices, lan_pb2.ListDevicesRequest(room_id="a b"), "room_id")
    await refused(harness, stub.ListAlerts, lan_pb2.ListAlertsRequest(limit=-5), "limit")
    await refused(
        harness,
        stub.ListAlerts,
        lan_pb2.ListAlertsRequest(states=[common_pb2.AlertState.ValueType(42)]),
        "states[0]",
    )
    ack = lan_pb2.AcknowledgeAlertRequest(alert_id="x" * 65)
    await refused(harness, stub.AcknowledgeAlert, ack, "alert_id")
    ack = lan_pb2.AcknowledgeAlertRequest(alert_id="a1", note="bell\x07")
    await refused(harness, stub.AcknowledgeAlert, ack, "note")
    query = lan_pb2.QueryTelemetryRequest(device_id="r102-env", metric="Temperature")
    await refused(harness, stub.QueryTelemetry, query, "metric")
    query = lan_pb2.QueryTelemetryRequest(device_id="r102-env", metric="temperature")
    query.start.FromSeconds(2000)
    query.end.FromSeconds(1000)
    await refused(harness, stub.QueryTelemetry, query, "end")
    query = lan_pb2.QueryTelemetryRequest(device_id="r102-env", metric="temperature")
    query.start.seconds = 10**15
    await refused(harness, stub.QueryTelemetry, query, "start")
    # A page bigger than the maximum is served as the maximum.
    many = await stub.ListAlerts(lan_pb2.ListAlertsRequest(limit=10**6), metadata=harness.auth)
    assert list(many.alerts) == []
