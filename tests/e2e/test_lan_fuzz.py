"""Property: whatever a client sends to any LAN method, the gateway answers with a
deliberate status (never UNKNOWN or INTERNAL) and keeps serving.

Hypothesis generates requests for every method of the LanService (ids with
spaces and control characters, huge and negative numbers, nested and huge
structs, out-of-range durations and timestamps, unknown enum values) and
sends them, with a staff token, to `bellhop edge run` as a real process on a
real broker.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from bellhop.lan.v1 import lan_pb2, lan_pb2_grpc
from bellhop_edge.auth import LocalTokens, Role
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.edge_process import EdgeProcess, write_config
from tests.support.mosquitto import MosquittoBroker, require_mosquitto, wait_for_port

DEVICES = {"r101-light": "light", "r101-thermostat": "thermostat", "r101-door": "door_sensor"}
DELIBERATE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.PERMISSION_DENIED,
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Lan:
    def __init__(self, stub: lan_pb2_grpc.LanServiceStub, token: str) -> None:
        self.stub = stub
        self.auth = (("authorization", f"Bearer {token}"),)

    def call(self, method: str, request: Any) -> grpc.StatusCode:
        rpc: Callable[..., Any] = getattr(self.stub, method)
        try:
            reply = rpc(request, metadata=self.auth, timeout=1.5)
            if method == "WatchEvents":
                reply.cancel()
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            details = exc.details() or ""
            assert code in DELIBERATE, f"{method} answered {code.name}: {details}"
            assert "Traceback" not in details
            return code
        return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    require_mosquitto()
    tmp = tmp_path_factory.mktemp("lan-fuzz")
    (tmp / "mosquitto").mkdir()
    broker = MosquittoBroker(tmp / "mosquitto")
    broker.start()
    gateway: EdgeProcess | None = None
    try:
        hotel_id = "h-lan-fuzz"
        gw = broker.add_gateway(hotel_id)
        broker.reload()
        config = tmp / "edge.toml"
        port = write_config(
            config, hotel_id=hotel_id, mosquitto=broker, gateway=gw, devices=DEVICES
        )
        token = LocalTokens(tmp / "edge" / "staff-tokens.json").create("fuzz", Role.ADMIN)
        gateway = EdgeProcess(config)
        gateway.start()
        wait_for_port("127.0.0.1", port, timeout=30)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Lan(lan_pb2_grpc.LanServiceStub(channel), token)
            # Still serving, still connected to the broker, never reconnected.
            status = lan_pb2_grpc.LanServiceStub(channel).GetGatewayStatus(
                lan_pb2.GetGatewayStatusRequest(),
                metadata=(("authorization", f"Bearer {token}"),),
                timeout=5,
            )
            assert status.broker_connected
            assert gateway.subscribed() == 1, gateway.log_tail()
    finally:
        if gateway is not None and gateway.proc is not None:
            assert gateway.stop(signal.SIGTERM) == 0
        broker.stop()


# -- strategies -----------------------------------------------------------------------
ids = st.one_of(
    st.sampled_from([*DEVICES, "101", "nobody", ""]),
    st.text(max_size=80),
    st.text(alphabet="abc-_/#+ \x00\n", max_size=70),
)
names = st.one_of(st.sampled_from(["set_light", "ping", "temperature", ""]), st.text(max_size=40))
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**15), max_value=10**15)
    | st.text(max_size=200),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
structs = st.one_of(
    st.dictionaries(st.text(max_size=40), json_values, max_size=40),
    st.builds(
        lambda n, v: {f"k{i}": v for i in range(n)}, st.integers(0, 3000), st.text(max_size=300)
    ),
)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    try:
        message.update(values)
    except (ValueError, TypeError):
        message.update({"unencodable": True})
    return message


def duration(seconds: int, nanos: int) -> dict[str, int]:
    return {"seconds": seconds, "nanos": nanos}


durations = st.builds(duration, int64, st.integers(-(10**9), 10**9))


def _set(message: Any, field: str, value: dict[str, int] | None) -> None:
    if value is not None:
        target = getattr(message, field)
        try:
            target.seconds, target.nanos = value["seconds"], value["nanos"]
        except ValueError:
            message.ClearField(field)


# -- one property per method ----------------------------------------------------------
@FUZZ
@given(room=ids, unknown=st.booleans(), device=ids)
def test_reads_of_rooms_and_devices(lan: Lan, room: str, unknown: bool, device: str) -> None:
    lan.call("ListRooms", lan_pb2.ListRoomsRequest())
    lan.call("ListDevices", lan_pb2.ListDevicesRequest(room_id=room, include_unknown=unknown))
    lan.call("GetDevice", lan_pb2.GetDeviceRequest(device_id=device))
    lan.call("GetGatewayStatus", lan_pb2.GetGatewayStatusRequest())


@FUZZ
@given(device=ids, values=structs, version=int64)
def test_set_desired_state(lan: Lan, device: str, values: dict[str, Any], version: int) -> None:
    request = lan_pb2.SetDesiredStateRequest(
        device_id=device, values=struct(values), expected_version=version
    )
    lan.call("SetDesiredState", request)


@FUZZ
@given(
    device=ids,
    name=names,
    params=structs,
    command_id=ids,
    ttl=st.none() | durations,
    timeout=st.none() | durations,
)
def test_send_command(
    lan: Lan,
    device: str,
    name: str,
    params: dict[str, Any],
    command_id: str,
    ttl: dict[str, int] | None,
    timeout: dict[str, int] | None,
) -> None:
    request = lan_pb2.SendCommandRequest(
        device_id=device, name=name, params=struct(params), command_id=command_id
    )
    _set(request, "ttl", ttl)
    _set(request, "timeout", timeout)
    lan.call("SendCommand", request)


@FUZZ
@given(
    rooms=st.lists(ids, max_size=5),
    floors=st.lists(int32, max_size=5),
    kinds=st.lists(st.integers(-5, 20), max_size=5),
    devices=st.lists(ids, max_size=5),
    everything=st.booleans(),
    name=names,
    fleet_id=ids,
    in_flight=int32,
    ttl=st.none() | durations,
)
def test_send_fleet_command(
    lan: Lan,
    rooms: list[str],
    floors: list[int],
    kinds: list[int],
    devices: list[str],
    everything: bool,
    name: str,
    fleet_id: str,
    in_flight: int,
    ttl: dict[str, int] | None,
) -> None:
    request = lan_pb2.SendFleetCommandRequest(name=name, fleet_id=fleet_id, max_in_flight=in_flight)
    request.target.room_ids.extend(rooms)
    request.target.floors.extend(floors)
    request.target.kinds.extend(kinds)  # type: ignore[arg-type]
    request.target.device_ids.extend(devices)
    request.target.all_devices = everything
    _set(request, "ttl", ttl)
    lan.call("SendFleetCommand", request)


@FUZZ
@given(
    states=st.lists(st.integers(-3, 10), max_size=4),
    room=ids,
    limit=int32,
    alert=ids,
    note=st.text(max_size=700),
)
def test_alerts(lan: Lan, states: list[int], room: str, limit: int, alert: str, note: str) -> None:
    listing = lan_pb2.ListAlertsRequest(room_id=room, limit=limit)
    listing.states.extend(states)  # type: ignore[arg-type]
    lan.call("ListAlerts", listing)
    lan.call("AcknowledgeAlert", lan_pb2.AcknowledgeAlertRequest(alert_id=alert, note=note))


@FUZZ
@given(
    device=ids,
    metric=names,
    start=st.none() | durations,
    end=st.none() | durations,
    limit=int32,
    room=ids,
)
def test_telemetry_and_events(
    lan: Lan,
    device: str,
    metric: str,
    start: dict[str, int] | None,
    end: dict[str, int] | None,
    limit: int,
    room: str,
) -> None:
    request = lan_pb2.QueryTelemetryRequest(device_id=device, metric=metric, limit=limit)
    _set(request, "start", start)
    _set(request, "end", end)
    lan.call("QueryTelemetry", request)
    lan.call("WatchEvents", lan_pb2.WatchEventsRequest(room_id=room))
