"""ListDevices with `include_state`: every device's state in one call, as GetDevice reads it."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
from bellhop.lan.v1 import lan_pb2
from bellhop_devices.messages import Channel
from google.protobuf import struct_pb2

from tests.integration.edge.conftest import DEVICES, FakeDevice, Harness


def params(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def reported_and_desired(harness: Harness) -> None:
    """The thermostat reports a state and staff set a setpoint apart from it."""
    async with harness.device_client("r101-thermostat") as client:
        device = FakeDevice(harness.hotel_id, "r101-thermostat", client)
        await device.send(
            Channel.STATE,
            {"v": 1, "ts": int(time.time() * 1000), "values": {"setpoint": 21.0, "mode": "heat"}},
        )
        await harness.wait_for(lambda: "r101-thermostat" in harness.gateway.hotel.reported)
    await harness.stub.SetDesiredState(
        lan_pb2.SetDesiredStateRequest(device_id="r101-thermostat", values=params(setpoint=23.0)),
        metadata=harness.auth,
    )


async def test_each_listed_state_is_what_get_device_answers(harness: Harness) -> None:
    await reported_and_desired(harness)
    listed = await harness.stub.ListDevices(
        lan_pb2.ListDevicesRequest(include_state=True), metadata=harness.viewer, timeout=5
    )
    assert [d.device_id for d in listed.devices] == sorted(DEVICES)
    assert [s.device_id for s in listed.states] == [d.device_id for d in listed.devices]
    for state in listed.states:
        one = await harness.stub.GetDevice(
            lan_pb2.GetDeviceRequest(device_id=state.device_id), metadata=harness.auth, timeout=5
        )
        assert state.HasField("reported") == one.HasField("reported"), state.device_id
        assert state.reported == one.reported
        assert state.HasField("desired") == one.HasField("desired"), state.device_id
        assert state.desired == one.desired
        assert state.delta == one.delta
    thermostat = next(s for s in listed.states if s.device_id == "r101-thermostat")
    assert thermostat.reported.values["setpoint"] == 21.0
    assert thermostat.desired.version == 1
    assert dict(thermostat.delta) == {"setpoint": 23.0}
    # Devices that never reported: an entry all the same, without state.
    door = next(s for s in listed.states if s.device_id == "r101-door")
    assert not door.HasField("reported")
    assert not door.HasField("desired")


async def test_without_the_flag_the_answer_is_as_before(harness: Harness) -> None:
    await reported_and_desired(harness)
    listed = await harness.stub.ListDevices(
        lan_pb2.ListDevicesRequest(), metadata=harness.auth, timeout=5
    )
    assert len(listed.devices) == len(DEVICES)
    assert list(listed.states) == []


async def test_one_room_with_state(harness: Harness) -> None:
    listed = await harness.stub.ListDevices(
        lan_pb2.ListDevicesRequest(room_id="102", include_state=True),
        metadata=harness.auth,
        timeout=5,
    )
    assert [d.device_id for d in listed.devices] == ["r102-env"]
    assert [s.device_id for s in listed.states] == ["r102-env"]


async def test_a_bad_room_is_refused_and_a_token_is_needed(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.ListDevices(
            lan_pb2.ListDevicesRequest(room_id="bad room\x00", include_state=True),
            metadata=harness.auth,
            timeout=5,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (info.value.details() or "").startswith("room_id")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await harness.stub.ListDevices(lan_pb2.ListDevicesRequest(include_state=True), timeout=5)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
