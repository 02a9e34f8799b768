"""The LAN transport against a real gateway (tests/sdk/conftest.py): every call of the
Transport protocol, answered in the SDK's models."""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

import pytest
from bellhop.lan.v1 import lan_pb2
from bellhop_sdk.auth import StaticToken
from bellhop_sdk.cloud import CloudTransport
from bellhop_sdk.errors import CommandRejected, InvalidRequest, NotFound
from bellhop_sdk.lan import LanTransport
from bellhop_sdk.models import (
    AckResult,
    Alert,
    AlertState,
    CommandStatus,
    Event,
    FleetTarget,
    Path,
    TelemetryPoint,
    from_ms,
    state_key,
)

from tests.sdk.conftest import DEVICES, ENV, LIGHT, ROOM, THERMOSTAT, SdkSite
from tests.sdk.scenario import eventually, first_state_event


async def test_hotel_rooms_and_devices_with_freshness(sdk_site: SdkSite, lan: LanTransport) -> None:
    assert await lan.probe(2)
    (hotel,) = await lan.list_hotels()
    assert hotel.hotel_id == sdk_site.hotel_id
    assert hotel.freshness.path is Path.LAN
    assert (await lan.get_hotel(sdk_site.hotel_id)).hotel_id == sdk_site.hotel_id
    rooms = await lan.list_rooms(sdk_site.hotel_id)
    assert [r.room_id for r in rooms] == [ROOM]
    devices = await lan.list_devices(sdk_site.hotel_id)
    assert {d.device_id: d.kind for d in devices} == DEVICES
    assert all(d.room_id == ROOM and d.online for d in devices)
    thermostat = await lan.get_device(sdk_site.hotel_id, THERMOSTAT)
    assert thermostat.freshness.path is Path.LAN
    assert thermostat.freshness.stale_since is None  # online: current as of the read
    assert thermostat.last_seen is not None
    assert thermostat.last_seen <= thermostat.freshness.as_of


class CountingGateway(LanTransport):
    """The LAN transport counting its calls by request type; `older` strips the listed
    states from ListDevices answers, as a gateway from before `include_state` answers."""

    def __init__(self, *args: Any, older: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.older = older
        self.calls: Counter[str] = Counter()

    async def _call(self, method: Any, request: Any, *, timeout_s: float | None = None) -> Any:
        self.calls[type(request).__name__] += 1
        answer = await super()._call(method, request, timeout_s=timeout_s)
        if self.older and isinstance(answer, lan_pb2.ListDevicesResponse):
            del answer.states[:]
        return answer


@pytest.mark.parametrize("older", [False, True], ids=["one-call", "older-gateway"])
async def test_devices_listed_with_their_state_as_each_read_says(
    sdk_site: SdkSite, older: bool
) -> None:
    await sdk_site.devices.report_state(THERMOSTAT, {"temperature": 19.5, "setpoint": 20})
    transport = CountingGateway(sdk_site.lan_target, StaticToken(sdk_site.lan_token), older=older)
    try:
        await transport.set_desired(sdk_site.hotel_id, THERMOSTAT, {"setpoint": 24.5})

        async def read() -> bool:
            listed = {d.device_id: d for d in await transport.list_devices(sdk_site.hotel_id)}
            one = await transport.get_device(sdk_site.hotel_id, THERMOSTAT)
            version = listed[THERMOSTAT].reported_version
            return version is not None and version == one.reported_version

        await eventually(read, "the thermostat's report in the list")
        transport.calls.clear()
        listed = await transport.list_devices(sdk_site.hotel_id, room_id=ROOM)
        calls = dict(transport.calls)
        assert calls == (
            {"ListDevicesRequest": 1, "GetDeviceRequest": len(DEVICES)}
            if older
            else {"ListDevicesRequest": 1}
        )
        assert sorted(d.device_id for d in listed) == sorted(DEVICES)
        for device in listed:
            one = await transport.get_device(sdk_site.hotel_id, device.device_id)
            same = ("kind", "room_id", "online", "reported", "reported_at", "delta", "firmware")
            assert {k: getattr(device, k) for k in same} == {k: getattr(one, k) for k in same}
            assert (device.desired is None) == (one.desired is None)
            if device.desired is not None and one.desired is not None:
                assert device.desired.version == one.desired.version
                assert device.desired.values == one.desired.values
            assert device.freshness.path is Path.LAN
        thermostat = next(d for d in listed if d.device_id == THERMOSTAT)
        assert thermostat.desired is not None
        assert thermostat.desired.values["setpoint"] == 24.5
    finally:
        await transport.aclose()


async def test_reported_state_is_read_with_its_time(sdk_site: SdkSite, lan: LanTransport) -> None:
    values = {"temperature": 20.5, "setpoint": 21}
    ts = await sdk_site.devices.report_state(THERMOSTAT, values)

    async def reported() -> bool:
        device = await lan.get_device(sdk_site.hotel_id, THERMOSTAT)
        return device.reported_at == from_ms(ts)

    await eventually(reported, "the report read on the LAN")
    device = await lan.get_device(sdk_site.hotel_id, THERMOSTAT)
    assert dict(device.reported) == values
    assert device.reported_version is not None


async def test_desired_state_set_and_read(sdk_site: SdkSite, lan: LanTransport) -> None:
    before = await lan.get_desired(sdk_site.hotel_id, THERMOSTAT)
    state = await lan.set_desired(sdk_site.hotel_id, THERMOSTAT, {"setpoint": 22.5})
    assert state.version > before.version
    assert state.values["setpoint"] == 22.5
    assert state.freshness.path is Path.LAN
    read = await lan.get_desired(sdk_site.hotel_id, THERMOSTAT)
    assert read.version == state.version


async def test_a_command_and_a_rejected_one(sdk_site: SdkSite, lan: LanTransport) -> None:
    command_id = f"lan-{secrets.token_hex(4)}"
    done = await lan.send_command(
        sdk_site.hotel_id, THERMOSTAT, "set_setpoint", {"setpoint": 21}, command_id=command_id
    )
    assert done.status is CommandStatus.SUCCEEDED
    assert done.command_id == command_id
    assert dict(done.result or {}) == {"setpoint": 21}
    assert done.completed_at is not None
    # The same id again answers from the gateway's record: the device ran it once.
    again = await lan.send_command(
        sdk_site.hotel_id, THERMOSTAT, "set_setpoint", {"setpoint": 21}, command_id=command_id
    )
    assert again.status is CommandStatus.SUCCEEDED
    assert sdk_site.devices.received(THERMOSTAT).count(command_id) == 1
    with pytest.raises(CommandRejected) as rejected:
        await lan.send_command(
            sdk_site.hotel_id,
            THERMOSTAT,
            "set_setpoint",
            {"fail": True},
            command_id=f"lan-{secrets.token_hex(4)}",
        )
    assert rejected.value.command is not None
    assert rejected.value.command.status is CommandStatus.FAILED
    assert "bad_params" in (rejected.value.command.error or "")
    assert rejected.value.path is Path.LAN
    # Looked up by id in the gateway's history: what was asked, by whom, and the result.
    found = await lan.get_command(sdk_site.hotel_id, command_id)
    assert (found.status, found.result) == (done.status, done.result)
    assert (found.name, dict(found.params)) == ("set_setpoint", {"setpoint": 21})
    assert found.completed_at == done.completed_at
    assert found.requested_by == "front-desk"
    assert found.requested_at is not None
    assert found.expires_at is not None
    assert found.requested_at < found.expires_at
    with pytest.raises(NotFound) as unknown:
        await lan.get_command(sdk_site.hotel_id, f"never-{secrets.token_hex(4)}")
    assert unknown.value.code == "NOT_FOUND"
    with pytest.raises(InvalidRequest):
        await lan.get_command(sdk_site.hotel_id, "bad id/#")


async def test_a_command_sent_through_the_cloud_is_found_on_the_lan(
    sdk_site: SdkSite, lan: LanTransport, cloud: CloudTransport
) -> None:
    command_id = f"cloud-{secrets.token_hex(4)}"
    sent = await cloud.send_command(
        sdk_site.hotel_id, LIGHT, "set_light", {"on": True}, command_id=command_id
    )
    found = await lan.get_command(sdk_site.hotel_id, command_id)
    assert found.status is sent.status is CommandStatus.SUCCEEDED
    assert found.result == sent.result
    assert (found.name, dict(found.params)) == ("set_light", {"on": True})
    assert (found.requested_by or "").startswith("cloud:")


async def test_fleet_command(sdk_site: SdkSite, lan: LanTransport) -> None:
    fleet = await lan.send_fleet_command(
        sdk_site.hotel_id,
        FleetTarget(device_ids=(LIGHT,)),
        "set_light",
        {"on": True},
        fleet_id=f"lan-{secrets.token_hex(4)}",
    )
    assert fleet.targeted == 1
    assert fleet.counts == {CommandStatus.SUCCEEDED: 1}
    (command,) = fleet.commands
    assert command.device_id == LIGHT
    assert fleet.finished


async def test_fleet_targets_select_alike_on_both_paths(
    sdk_site: SdkSite, lan: LanTransport, cloud: CloudTransport
) -> None:
    """Within a list any value, across the lists all of them: on the LAN as in the cloud."""
    targets = {
        FleetTarget(kinds=("light", "thermostat"), room_ids=(ROOM,)): {LIGHT, THERMOSTAT},
        FleetTarget(kinds=("light",), device_ids=(LIGHT, THERMOSTAT)): {LIGHT},
        FleetTarget(room_ids=(ROOM,), all_devices=True): set(DEVICES),
    }
    for target, expected in targets.items():
        for transport in (lan, cloud):
            fleet = await transport.send_fleet_command(
                sdk_site.hotel_id, target, "ping", {}, fleet_id=f"both-{secrets.token_hex(4)}"
            )
            assert {c.device_id for c in fleet.commands} == expected, (transport.path, target)
    with pytest.raises(NotFound):
        await lan.send_fleet_command(
            sdk_site.hotel_id,
            FleetTarget(kinds=("light",), device_ids=(THERMOSTAT,)),
            "ping",
            fleet_id=f"none-{secrets.token_hex(4)}",
        )


async def test_alerts_and_acknowledgement(sdk_site: SdkSite, lan: LanTransport) -> None:
    await sdk_site.devices.breach()

    async def raised() -> list[Alert]:
        alerts = await lan.list_alerts(sdk_site.hotel_id, active_only=True)
        return [a for a in alerts if a.kind == "breach" and a.state is AlertState.RAISED]

    (alert,) = await eventually(raised, "a breach alert")
    first = await lan.acknowledge_alert(sdk_site.hotel_id, alert.alert_id, note="on my way")
    assert first.outcome is AckResult.ACKNOWLEDGED
    assert first.alert is not None
    assert first.alert.state is AlertState.ACKNOWLEDGED
    assert first.alert.note == "on my way"
    # The next list shows it: no waiting for the gateway's store.
    listed = await lan.list_alerts(sdk_site.hotel_id, active_only=True)
    (shown,) = [a for a in listed if a.alert_id == alert.alert_id]
    assert shown.state is AlertState.ACKNOWLEDGED
    assert (shown.acknowledged_at, shown.note) == (first.alert.acknowledged_at, "on my way")
    again = await lan.acknowledge_alert(sdk_site.hotel_id, alert.alert_id, note="me too")
    assert again.outcome is AckResult.ALREADY_ACKNOWLEDGED
    assert again.alert is not None
    assert again.alert.acknowledged_at == first.alert.acknowledged_at
    assert (again.alert.acknowledged_by, again.alert.note) == ("front-desk", "on my way")


async def test_telemetry_history(sdk_site: SdkSite, lan: LanTransport) -> None:
    ts = int(time.time() * 1000) - secrets.randbelow(10**6)
    await sdk_site.devices.telemetry(ENV, {"humidity": 41.5}, ts)

    async def stored() -> list[TelemetryPoint]:
        points = await lan.telemetry(sdk_site.hotel_id, ENV, "humidity")
        return [p for p in points if p.at == from_ms(ts)]

    (point,) = await eventually(stored, "the reading in the history")
    assert point.value == 41.5
    assert point.metric == "humidity"
    assert await lan.gateway_backlog(sdk_site.hotel_id) is not None


async def test_events_carry_a_state_change(sdk_site: SdkSite, lan: LanTransport) -> None:
    event, reports = await first_state_event(sdk_site, lan.events(sdk_site.hotel_id))
    assert isinstance(event, Event)
    assert event.path is Path.LAN
    assert event.room_id == ROOM
    ts = int(event.key[2])
    assert event.key == state_key(THERMOSTAT, from_ms(ts))
    assert dict(event.data["values"]) == reports[ts]
    assert event.at == from_ms(ts)
