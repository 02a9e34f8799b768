"""What the relay sends down the bridge, checked as the gateway's LAN requests are: any
command, acknowledgement or desired change is carried out or refused, never a crash."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge.desired import RemoteIntent
from bellhop_edge.bridge.remote import RemoteControl
from bellhop_edge.clock import now_ms
from bellhop_edge.config import CommandsConfig
from bellhop_edge.core.commands import CommandRecord, CommandRequest
from bellhop_edge.core.model import CommandResult, CommandStatus
from bellhop_edge.errors import InvalidRequest
from hypothesis import given, settings
from hypothesis import strategies as st

NOW = 1_800_000_000_000
TEXT = st.text(max_size=80) | st.sampled_from(["", "r101-thermostat", "c-1", "x" * 300, "a\x00b"])
SCALAR = (
    st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.none()
)


class Gateway:
    """The gateway's command and alert paths, recording what reached them."""

    def __init__(self) -> None:
        self.commands: list[CommandRequest] = []
        self.acks: list[tuple[str, str, str, int | None]] = []
        self.merges: list[tuple[str, RemoteIntent, str]] = []

    async def send_command(self, request: CommandRequest, *, timeout: float) -> CommandRecord:
        assert 0 < timeout <= 60
        self.commands.append(request)
        result = CommandResult(
            request.command_id, request.device_id, CommandStatus.SUCCEEDED, completed_at=NOW
        )
        return CommandRecord(request, result, NOW)

    def acknowledge_alert(self, alert_id: str, *, by: str, note: str, at: int | None = None) -> Any:
        self.acks.append((alert_id, by, note, at))

    def merge_desired(self, device_id: str, remote: RemoteIntent, change_id: str) -> Any:
        if any(isinstance(v, float) and not math.isfinite(v) for v in remote.fields.values()):
            raise InvalidRequest("values: not a finite number")
        self.merges.append((device_id, remote, change_id))


def params(values: dict[str, Any]) -> Any:
    struct = common_pb2.Command().params
    for key, value in values.items():
        struct.fields[key].CopyFrom(_value(value))
    return struct


def _value(value: Any) -> Any:
    from google.protobuf import struct_pb2

    v = struct_pb2.Value()
    if value is None:
        v.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        v.bool_value = value
    elif isinstance(value, int | float):
        v.number_value = float(value)
    else:
        v.string_value = value
    return v


@settings(max_examples=150, deadline=None)
@given(
    command_id=TEXT,
    device_id=TEXT,
    name=TEXT,
    values=st.dictionaries(TEXT, SCALAR, max_size=5),
    by=TEXT,
    timeout_ms=st.integers(0, 2**32 - 1),
    expires_s=st.integers(-(2**40), 2**40) | st.none(),
)
def test_any_remote_command_runs_checked_or_is_refused_with_a_reason(
    command_id: str,
    device_id: str,
    name: str,
    values: dict[str, Any],
    by: str,
    timeout_ms: int,
    expires_s: int | None,
) -> None:
    gateway = Gateway()
    remote = RemoteControl(gateway, CommandsConfig())
    command = common_pb2.Command(
        command_id=command_id, device_id=device_id, name=name, params=params(values)
    )
    if expires_s is not None:
        command.expires_at.seconds = max(min(expires_s, 253_402_300_799), -62_135_596_800)
    frame = bridge_pb2.RemoteCommand(command=command, requested_by=by, timeout_ms=timeout_ms)
    answers: list[bridge_pb2.RemoteCommandResult] = []

    async def run() -> None:
        answered = asyncio.Event()

        async def reply(answer: bridge_pb2.RemoteCommandResult) -> None:
            answers.append(answer)
            answered.set()

        remote.command(frame, reply)
        await asyncio.wait_for(answered.wait(), 5)
        await remote.close()

    asyncio.run(run())
    (answer,) = answers  # every command is answered, once
    if gateway.commands:
        (request,) = gateway.commands
        assert request.command_id == command_id
        assert request.requested_by == by
        # However long it waited in the relay's queue, never past the gateway's own limit.
        assert request.expires_at <= time.time() * 1000 + CommandsConfig().max_ttl_s * 1000
    result = answer.result
    assert len(result.command_id) <= 64
    assert len(result.error) <= 500
    if gateway.commands:
        assert result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
    else:  # refused before it ran: says why, as a failure
        assert result.status == common_pb2.COMMAND_STATUS_FAILED
        assert result.error
        assert remote.refused == 1


@settings(max_examples=150, deadline=None)
@given(
    change_id=TEXT,
    device_id=TEXT,
    values=st.dictionaries(TEXT, SCALAR, max_size=5),
    base=st.integers(-(2**62), 2**62),
    set_by=TEXT,
)
def test_any_desired_change_is_merged_checked_or_refused(
    change_id: str, device_id: str, values: dict[str, Any], base: int, set_by: str
) -> None:
    gateway = Gateway()
    remote = RemoteControl(gateway, CommandsConfig())
    change = bridge_pb2.DesiredStateChange(
        change_id=change_id,
        device_id=device_id,
        values=params(values),
        base_version=base,
        set_by=set_by,
    )
    change.set_at.FromMilliseconds(NOW)
    remote.desired(change)  # never raises
    if gateway.merges:
        ((merged_device, intent, merged_id),) = gateway.merges
        assert (merged_device, merged_id, intent.by) == (device_id, change_id, set_by)
        assert intent.base_version == (base or None)
        assert base >= 0
    else:
        assert remote.refused == 1


@settings(max_examples=100, deadline=None)
@given(alert_id=TEXT, by=TEXT, note=st.text(max_size=600), at=st.integers(0, 2**40))
def test_any_acknowledgement_is_taken_with_its_who_and_when_or_left_alone(
    alert_id: str, by: str, note: str, at: int
) -> None:
    gateway = Gateway()
    ack = bridge_pb2.AlertAcknowledgement(alert_id=alert_id, acknowledged_by=by, note=note)
    ack.acknowledged_at.FromMilliseconds(at)
    RemoteControl(gateway, CommandsConfig()).acknowledge(ack)  # never raises
    for taken in gateway.acks:
        assert taken == (alert_id, by, note, at)


def test_an_acknowledgement_dated_far_ahead_takes_the_gateways_time() -> None:
    gateway = Gateway()
    ack = bridge_pb2.AlertAcknowledgement(alert_id="al-1", acknowledged_by="cloud:ops")
    ack.acknowledged_at.FromMilliseconds(253_402_300_799_000)  # 9999-12-31
    before = now_ms()
    RemoteControl(gateway, CommandsConfig()).acknowledge(ack)
    ((_, _, _, at),) = gateway.acks
    assert at is not None
    assert before <= at <= now_ms()


def test_a_well_formed_command_runs_with_its_expiry_capped_and_its_result_said() -> None:
    gateway = Gateway()
    remote = RemoteControl(gateway, CommandsConfig())
    command = common_pb2.Command(
        command_id="c-1", device_id="r101-light", name="set_light", params=params({"on": True})
    )
    command.expires_at.FromMilliseconds(int(time.time() * 1000) + 86_400_000)  # a day
    frame = bridge_pb2.RemoteCommand(command=command, requested_by="cloud:ops", timeout_ms=2500)
    answers: list[bridge_pb2.RemoteCommandResult] = []

    async def run() -> None:
        async def reply(answer: bridge_pb2.RemoteCommandResult) -> None:
            answers.append(answer)

        remote.command(frame, reply)
        while not answers:
            await asyncio.sleep(0)
        await remote.close()

    asyncio.run(run())
    (request,) = gateway.commands
    assert (request.name, dict(request.params), request.requested_by) == (
        "set_light",
        {"on": True},
        "cloud:ops",
    )
    assert request.expires_at <= time.time() * 1000 + 3600 * 1000  # the gateway's max_ttl_s
    assert answers[0].result.status == common_pb2.COMMAND_STATUS_SUCCEEDED
