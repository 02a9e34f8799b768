"""The LAN API answers as the cloud does, and every answer holds for the calls after it.

Acknowledgements report what happened; a command is looked up by id in the
gateway's history; fleet targets intersect their lists. The store writer
waits 300 ms before each commit here, so a read served from SQLite before
the write under test is committed would show the state before it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import grpc
import pytest
from bellhop.common.v1 import common_pb2
from bellhop.lan.v1 import lan_pb2
from bellhop_devices.messages import Channel
from bellhop_edge.core.commands import CommandRecord, CommandRequest
from bellhop_edge.core.model import (
    Alert,
    AlertKind,
    AlertSeverity,
    AlertState,
    CommandResult,
    CommandStatus,
)
from bellhop_edge.core.ops import PutAlert, PutCommand
from bellhop_edge.store import EdgeStore
from google.protobuf import duration_pb2, struct_pb2

from tests.integration.edge.conftest import DEVICES, FakeDevice, Harness

pytestmark = pytest.mark.gateway(store={"batch_max_delay_ms": 300})

ENV = "r102-env"


def now_ms() -> int:
    return int(time.time() * 1000)


def params(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def temperatures(harness: Harness, values: Sequence[float], first_seq: int) -> None:
    """The environment sensor reports `values`; returns once the gateway took them in."""
    accepted = harness.gateway.hotel.accepted
    async with harness.device_client(ENV) as client:
        device = FakeDevice(harness.hotel_id, ENV, client)
        for i, value in enumerate(values):
            seq = first_seq + i
            await device.send(
                Channel.TELEMETRY,
                {"v": 1, "ts": now_ms() + seq, "seq": seq, "metrics": {"temperature": value}},
            )
        await harness.wait_for(lambda: harness.gateway.hotel.accepted >= accepted + len(values))


async def raised_alert(harness: Harness) -> lan_pb2.ListAlertsResponse:
    """A temperature alert on the environment sensor, as listed right after it was raised."""
    await temperatures(harness, [35.0, 35.0, 35.0], first_seq=1)
    return await harness.stub.ListAlerts(
        lan_pb2.ListAlertsRequest(room_id="102"), metadata=harness.auth, timeout=5
    )


async def acknowledge(harness: Harness, alert_id: str, note: str = "") -> Any:
    return await harness.stub.AcknowledgeAlert(
        lan_pb2.AcknowledgeAlertRequest(alert_id=alert_id, note=note),
        metadata=harness.auth,
        timeout=5,
    )


async def test_an_acknowledgement_is_in_the_next_list(harness: Harness) -> None:
    listed = await raised_alert(harness)
    # Raised on ingest and not yet committed: the list shows it all the same.
    (alert,) = listed.alerts
    assert alert.state == common_pb2.ALERT_STATE_RAISED
    acked = await acknowledge(harness, alert.alert_id, note="window open")
    assert acked.outcome == lan_pb2.ACK_OUTCOME_ACKNOWLEDGED
    assert acked.alert.state == common_pb2.ALERT_STATE_ACKNOWLEDGED
    after = await harness.stub.ListAlerts(
        lan_pb2.ListAlertsRequest(room_id="102"), metadata=harness.viewer, timeout=5
    )
    (shown,) = after.alerts
    assert shown == acked.alert
    assert (shown.acknowledged_by, shown.note) == ("alice", "window open")
    open_only = await harness.stub.ListAlerts(
        lan_pb2.ListAlertsRequest(states=[common_pb2.ALERT_STATE_RAISED]),
        metadata=harness.viewer,
        timeout=5,
    )
    assert list(open_only.alerts) == []


async def test_acknowledging_again_keeps_the_first_who_and_when(harness: Harness) -> None:
    (alert,) = (await raised_alert(harness)).alerts
    # The first acknowledgement came through the cloud, with the relay's who and when.
    at = now_ms() - 60_000
    harness.gateway.acknowledge_alert(
        alert.alert_id, by="cloud:night@hotel.example", note="seen remotely", at=at
    )
    again = await acknowledge(harness, alert.alert_id, note="me too")
    assert again.outcome == lan_pb2.ACK_OUTCOME_ALREADY_ACKNOWLEDGED
    assert again.alert.state == common_pb2.ALERT_STATE_ACKNOWLEDGED
    assert again.alert.acknowledged_by == "cloud:night@hotel.example"
    assert again.alert.acknowledged_at.ToMilliseconds() == at
    assert again.alert.note == "seen remotely"
    (listed,) = (
        await harness.stub.ListAlerts(lan_pb2.ListAlertsRequest(), metadata=harness.auth)
    ).alerts
    assert listed == again.alert
    third = await acknowledge(harness, alert.alert_id)
    assert third.outcome == lan_pb2.ACK_OUTCOME_ALREADY_ACKNOWLEDGED
    assert third.alert == again.alert


async def test_a_cleared_alert_reports_already_cleared(harness: Harness) -> None:
    (alert,) = (await raised_alert(harness)).alerts
    book = harness.gateway.ingest.alerts

    def cleared() -> Alert | None:
        found = book.get(alert.alert_id)
        return found if found is not None and found.state is AlertState.CLEARED else None

    await temperatures(harness, [21.0, 21.0, 21.0], first_seq=4)
    await harness.wait_for(lambda: cleared() is not None)
    stood = cleared()
    assert stood is not None
    answer = await acknowledge(harness, alert.alert_id)
    assert answer.outcome == lan_pb2.ACK_OUTCOME_ALREADY_CLEARED
    assert answer.alert.state == common_pb2.ALERT_STATE_CLEARED
    assert answer.alert.acknowledged_by == ""
    assert answer.alert.cleared_at.ToMilliseconds() == stood.cleared_at
    listed = await harness.stub.ListAlerts(lan_pb2.ListAlertsRequest(), metadata=harness.auth)
    assert [a.state for a in listed.alerts] == [common_pb2.ALERT_STATE_CLEARED]


async def test_an_alert_cleared_before_a_restart_is_read_from_the_store(
    harness: Harness,
) -> None:
    """The alert book holds open alerts and this run's cleared ones; SQLite the older ones."""
    at = now_ms() - 3_600_000
    old = Alert(
        "cleared-long-ago",
        AlertKind.GAS,
        AlertSeverity.CRITICAL,
        AlertState.CLEARED,
        ENV,
        "102",
        "gas",
        raised_at=at,
        cleared_at=at + 60_000,
    )
    with EdgeStore.open(harness.gateway.config.database_path) as store:
        store.apply(PutAlert(old))
    answer = await acknowledge(harness, old.alert_id)
    assert answer.outcome == lan_pb2.ACK_OUTCOME_ALREADY_CLEARED
    assert answer.alert.cleared_at.ToMilliseconds() == at + 60_000
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await acknowledge(harness, "no-such-alert")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def get_command(harness: Harness, command_id: str) -> Any:
    return harness.stub.GetCommand(
        lan_pb2.GetCommandRequest(command_id=command_id), metadata=harness.viewer, timeout=5
    )


async def test_a_command_is_looked_up_by_id(harness: Harness) -> None:
    async with harness.device_client("r101-light") as client:
        device = FakeDevice(harness.hotel_id, "r101-light", client)
        async with device.serving():
            sent = await harness.stub.SendCommand(
                lan_pb2.SendCommandRequest(
                    device_id="r101-light",
                    name="set_light",
                    params=params(on=True),
                    command_id="look-1",
                ),
                metadata=harness.auth,
                timeout=5,
            )
    # Its result is not committed yet (300 ms): read from the command book.
    found = await get_command(harness, "look-1")
    assert found.result == sent.result
    assert found.result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
    assert (found.command.device_id, found.command.name) == ("r101-light", "set_light")
    assert dict(found.command.params) == {"on": True}
    assert found.requested_by == "alice"
    assert found.command.expires_at.ToMilliseconds() > found.created_at.ToMilliseconds()

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await get_command(harness, "never-sent")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    for bad in ("bad id/#", "", "x" * 65):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get_command(harness, bad)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith("command_id")


async def test_a_command_from_before_a_restart_is_read_from_the_store(harness: Harness) -> None:
    """The command book keeps this run's commands; the store has the older ones."""
    at = now_ms() - 3_600_000
    request = CommandRequest("old-1", "r101-thermostat", "set_setpoint", {"setpoint": 20}, at)
    result = CommandResult(
        "old-1", "r101-thermostat", CommandStatus.FAILED, error="bad_params", completed_at=at
    )
    with EdgeStore.open(harness.gateway.config.database_path) as store:
        store.apply(PutCommand(CommandRecord(request, result, at - 1000)))
    found = await get_command(harness, "old-1")
    assert found.result.status == common_pb2.COMMAND_STATUS_FAILED
    assert found.result.error == "bad_params"
    assert found.result.completed_at.ToMilliseconds() == at
    assert dict(found.command.params) == {"setpoint": 20}


@asynccontextmanager
async def every_device_serving(harness: Harness) -> AsyncIterator[dict[str, FakeDevice]]:
    async with AsyncExitStack() as stack:
        devices = {}
        for device_id in DEVICES:
            client = await stack.enter_async_context(harness.device_client(device_id))
            devices[device_id] = FakeDevice(harness.hotel_id, device_id, client)
            await stack.enter_async_context(devices[device_id].serving())
        yield devices


async def fleet(harness: Harness, name: str, **target: Any) -> set[str]:
    """The devices a fleet with this target reached (each one answers)."""
    reply = await harness.stub.SendFleetCommand(
        lan_pb2.SendFleetCommandRequest(
            target=lan_pb2.FleetTarget(**target),
            name="ping",
            fleet_id=name,
            timeout=duration_pb2.Duration(seconds=3),
        ),
        metadata=harness.auth,
        timeout=10,
    )
    assert reply.succeeded == reply.targeted
    return {r.device_id for r in reply.results}


async def test_fleet_target_lists_intersect(harness: Harness) -> None:
    # Both rooms are on floor 1; room 101 has a thermostat, a door and a light.
    thermostat, light = common_pb2.DEVICE_KIND_THERMOSTAT, common_pb2.DEVICE_KIND_LIGHT
    env = common_pb2.DEVICE_KIND_ENVIRONMENT_SENSOR
    async with every_device_serving(harness):
        assert await fleet(harness, "f1", kinds=[env], floors=[1]) == {ENV}
        assert await fleet(harness, "f2", kinds=[thermostat, light], room_ids=["101", "102"]) == {
            "r101-thermostat",
            "r101-light",
        }
        assert await fleet(
            harness, "f3", room_ids=["101"], device_ids=["r101-door", ENV], all_devices=True
        ) == {"r101-door"}
        assert await fleet(harness, "f4", room_ids=["101", "102"]) == set(DEVICES)
        assert await fleet(harness, "f5", all_devices=True) == set(DEVICES)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await fleet(harness, "f6", kinds=[thermostat], room_ids=["102"])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await fleet(harness, "f7", floors=[1], device_ids=["r999-ghost"])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
