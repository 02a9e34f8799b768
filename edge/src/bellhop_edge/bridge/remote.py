"""Remote control from the relay, carried out on the gateway's own paths.

    remote = RemoteControl(gateway, config.commands)
    remote.command(frame.command, reply)     # runs it; reply(result) when it is done
    remote.acknowledge(frame.alert_acknowledgement)
    await remote.close()

A remote command is checked as a LAN request is, then runs through the same
command service: the same deadline and expiry, and at most once per command
id whichever path (LAN or cloud, first or retried) brought it. Its result goes
back twice: at once on the bridge, if still open, and durably through the
outbox with every other command result. The relay sends a command again after
a reconnect if it has no result yet; the service answers that repeat with the
first result instead of running it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import CloseCode, ProtocolError, frames
from bellhop_bridge.desired import RemoteIntent

from bellhop_edge import convert
from bellhop_edge.api import validate
from bellhop_edge.clock import now_ms
from bellhop_edge.config import CommandsConfig
from bellhop_edge.core.commands import CommandRecord, CommandRequest
from bellhop_edge.errors import CommandIdReusedError, EdgeError

__all__ = ["Control", "RemoteControl"]

# How far ahead of the gateway's clock the relay's time of an acknowledgement is taken
# as it is (clocks a little apart); past that, the gateway's own time is kept.
ACK_AHEAD_MAX_MS: Final = 24 * 3600 * 1000

log = logging.getLogger(__name__)


class Control(Protocol):
    """What the gateway offers remote control: its own command and alert paths."""

    async def send_command(self, request: CommandRequest, *, timeout: float) -> CommandRecord: ...

    def acknowledge_alert(
        self, alert_id: str, *, by: str, note: str, at: int | None = None
    ) -> object: ...

    def merge_desired(self, device_id: str, remote: RemoteIntent, change_id: str) -> object: ...


Reply = Callable[[bridge_pb2.RemoteCommandResult], Awaitable[None]]


class RemoteControl:
    """Runs the relay's commands and acknowledgements; owns the tasks that wait for them."""

    def __init__(self, control: Control, config: CommandsConfig) -> None:
        self._control = control
        self._config = config
        self._tasks: set[asyncio.Task[None]] = set()
        self.commands = 0
        self.refused = 0

    def command(self, remote: bridge_pb2.RemoteCommand, reply: Reply) -> None:
        task = asyncio.create_task(self._run(remote, reply), name="remote-command")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, remote: bridge_pb2.RemoteCommand, reply: Reply) -> None:
        command = remote.command
        answer = bridge_pb2.RemoteCommandResult()
        answer.result.command_id = command.command_id[:64]
        answer.result.device_id = command.device_id[:64]
        try:
            request, timeout = self._request(remote)
            self.commands += 1
            record = await self._control.send_command(request, timeout=timeout)
            answer.result.CopyFrom(convert.command_result(record.result))
        except (EdgeError, ProtocolError) as exc:
            # Refused before it ran (a bad field, an unknown device): said back, not stored.
            # An id used before for another command is flagged, so that the relay tells
            # it from a failure by the flag, never by the error's words.
            self.refused += 1
            answer.id_reused = isinstance(exc, CommandIdReusedError)
            answer.result.status = common_pb2.COMMAND_STATUS_FAILED
            answer.result.error = str(exc)[:500]
            answer.result.completed_at.FromMilliseconds(now_ms())
        except Exception:  # a bug must not leave the caller waiting in silence
            log.exception("remote command %s failed", command.command_id[:64])
            answer.result.status = common_pb2.COMMAND_STATUS_FAILED
            answer.result.error = "the gateway failed to run the command"
            answer.result.completed_at.FromMilliseconds(now_ms())
        await reply(answer)

    def _request(self, remote: bridge_pb2.RemoteCommand) -> tuple[CommandRequest, float]:
        command, config = remote.command, self._config
        command_id = validate.command_id(command.command_id)
        if command_id is None:
            raise ProtocolError(CloseCode.BAD_FRAME, "command_id: required")
        by = frames.check_text(remote.requested_by, "requested_by", max_len=200)
        timeout = remote.timeout_ms / 1000 if remote.timeout_ms else config.default_timeout_s
        now = now_ms()
        # A device remembers few command ids, so no command here lives past max_ttl_s,
        # however long it waited in the relay's queue.
        latest = now + int(config.max_ttl_s * 1000)
        request = CommandRequest(
            command_id=command_id,
            device_id=validate.device_id(command.device_id),
            name=validate.name(command.name, "name"),
            params=validate.flat_values(command.params, "params"),
            expires_at=(
                min(frames.millis(command.expires_at, "expires_at"), latest)
                if command.HasField("expires_at")
                else now + int(config.default_ttl_s * 1000)
            ),
            requested_by=by,
        )
        return request, min(max(timeout, 0.01), config.max_timeout_s)

    def acknowledge(self, ack: bridge_pb2.AlertAcknowledgement) -> None:
        """Acknowledge on the edge with the relay's who and when; an alert already
        acknowledged, cleared or unknown here is left as it is (the relay learns how it
        stands from the outbox)."""
        try:
            alert_id = validate.alert_id(ack.alert_id)
            by = frames.check_text(ack.acknowledged_by, "acknowledged_by", max_len=200)
            note = validate.note(ack.note)
            now = now_ms()
            at = (
                frames.millis(ack.acknowledged_at, "acknowledged_at")
                if ack.HasField("acknowledged_at")
                else now
            )
            if at > now + ACK_AHEAD_MAX_MS:  # a clock far off: the edge's own time instead
                at = now
            self._control.acknowledge_alert(alert_id, by=by, note=note, at=at)
        except (EdgeError, ProtocolError) as exc:
            log.info("remote acknowledgement of %r left alone: %s", ack.alert_id[:64], exc)

    def desired(self, change: bridge_pb2.DesiredStateChange) -> None:
        """Merge desired state set through the cloud (docs/conflicts.md); the merged state
        and each field's outcome go back up through the outbox. A change merged already
        (the relay sends what it has no answer for again after a reconnect) is not merged
        twice."""
        try:
            change_id = validate.change_id(change.change_id)
            device_id = validate.device_id(change.device_id)
            if change.base_version < 0:
                raise ProtocolError(CloseCode.BAD_FRAME, "base_version: negative")
            remote = RemoteIntent(
                validate.flat_values(change.values, "values"),
                frames.millis(change.set_at, "set_at"),
                frames.check_text(change.set_by, "set_by", max_len=200),
                change.base_version or None,
            )
            self._control.merge_desired(device_id, remote, change_id)
        except (EdgeError, ProtocolError) as exc:
            self.refused += 1
            log.warning("desired state from the cloud for %r refused: %s", change.device_id, exc)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)
