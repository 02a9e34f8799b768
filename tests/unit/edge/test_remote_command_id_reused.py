"""A remote command whose id was used before for another command is flagged as such in
the gateway's answer (`RemoteCommandResult.id_reused`): the relay decides by that flag,
never by the error's words, which a device's own failure may repeat."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_edge.bridge.remote import RemoteControl
from bellhop_edge.clock import now_ms
from bellhop_edge.config import CommandsConfig
from bellhop_edge.core.commands import CommandBook, CommandRecord, CommandRequest
from bellhop_edge.core.model import CommandResult, CommandStatus
from bellhop_edge.errors import CommandIdReusedError, Conflict

LOOKALIKE = "command id 'c-1' was already used for 'set_light' on 'r101-light'"


class Gateway:
    """The gateway's command path as the command service decides it (a real CommandBook),
    each command answered by its device with `error` (a failure) or a success."""

    def __init__(self, error: str | None = None) -> None:
        self.book = CommandBook()
        self.error = error
        self.ran: list[CommandRequest] = []

    async def send_command(self, request: CommandRequest, *, timeout: float) -> CommandRecord:
        self.book.begin(request, now_ms())
        self.ran.append(request)
        status = CommandStatus.FAILED if self.error else CommandStatus.SUCCEEDED
        result = CommandResult(
            request.command_id, request.device_id, status, error=self.error, completed_at=now_ms()
        )
        return CommandRecord(request, result, now_ms())

    def acknowledge_alert(self, alert_id: str, *, by: str, note: str, at: int | None = None) -> Any:
        return None

    def merge_desired(self, device_id: str, remote: Any, change_id: str) -> Any:
        return None


def frame(on: bool, command_id: str = "c-1") -> bridge_pb2.RemoteCommand:
    command = common_pb2.Command(command_id=command_id, device_id="r101-light", name="set_light")
    command.params.fields["on"].bool_value = on
    return bridge_pb2.RemoteCommand(command=command, requested_by="cloud:ops", timeout_ms=2000)


def answer(remote: RemoteControl, command: bridge_pb2.RemoteCommand) -> Any:
    answers: list[bridge_pb2.RemoteCommandResult] = []

    async def run() -> None:
        answered = asyncio.Event()

        async def reply(a: bridge_pb2.RemoteCommandResult) -> None:
            answers.append(a)
            answered.set()

        remote.command(command, reply)
        await asyncio.wait_for(answered.wait(), 5)

    asyncio.run(run())
    (only,) = answers
    return only


def test_the_reuse_refusal_is_its_own_conflict() -> None:
    assert issubclass(CommandIdReusedError, Conflict)  # the LAN API still answers it as one
    book = CommandBook()
    book.begin(CommandRequest("c-1", "r101-light", "set_light", {"on": True}, now_ms() + 9000), 0)
    other = CommandRequest("c-1", "r101-light", "set_light", {"on": False}, now_ms() + 9000)
    with pytest.raises(CommandIdReusedError) as refused:
        book.begin(other, 0)
    assert refused.value.command_id == "c-1"


def test_an_id_used_for_another_command_is_refused_with_the_flag_set() -> None:
    gateway = Gateway()
    remote = RemoteControl(gateway, CommandsConfig())
    first = answer(remote, frame(on=True))
    assert (first.result.status, first.id_reused) == (common_pb2.COMMAND_STATUS_SUCCEEDED, False)
    refused = answer(remote, frame(on=False))
    assert refused.id_reused
    assert refused.result.status == common_pb2.COMMAND_STATUS_FAILED
    assert refused.result.error  # words for people, besides the flag
    assert len(gateway.ran) == 1  # nothing ran


def test_a_device_failure_in_the_refusals_words_is_not_flagged() -> None:
    remote = RemoteControl(Gateway(error=LOOKALIKE), CommandsConfig())
    failed = answer(remote, frame(on=True))
    assert failed.result.status == common_pb2.COMMAND_STATUS_FAILED
    assert failed.result.error == LOOKALIKE
    assert not failed.id_reused


def test_a_refusal_for_another_reason_is_not_flagged() -> None:
    remote = RemoteControl(Gateway(), CommandsConfig())
    bad = answer(remote, frame(on=True, command_id="has space"))
    assert bad.result.status == common_pb2.COMMAND_STATUS_FAILED
    assert not bad.id_reused
