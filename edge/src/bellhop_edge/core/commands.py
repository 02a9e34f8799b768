"""Command bookkeeping: at most once per id, never after expiry.

`CommandBook` is the sans-I/O core: it is told about requests, acks and
deadlines and answers with what to do. `bellhop_edge.commands.CommandService`
is the asyncio driver that publishes on MQTT, waits for acks with a deadline
and persists every result through the store writer.

Idempotency: a command id is executed at most once. A retry of a finished
command returns the stored result (also after a gateway restart, from
SQLite); a retry of a pending one waits for the same ack; a retry after a
timeout republishes the same id (the device deduplicates by id, see
docs/device-protocol.md), so a slow device still gets a chance to answer
without ever acting twice. The pending record is written without waiting for
its commit so that the LAN round trip stays in the low milliseconds; if the
gateway dies in between, the device's own id memory still prevents a second
execution of a retried command.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bellhop_bridge.commands import fleet_command_id
from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import Ack, AckStatus, Command

from bellhop_edge.core.model import CommandResult, CommandStatus
from bellhop_edge.errors import CommandIdReusedError, InvalidRequest, Unavailable

FINAL = frozenset({CommandStatus.SUCCEEDED, CommandStatus.FAILED, CommandStatus.EXPIRED})


@dataclass(frozen=True, slots=True)
class CommandRequest:
    command_id: str
    device_id: str
    name: str
    params: Mapping[str, Any]
    expires_at: int
    requested_by: str = ""

    def same_as(self, other: CommandRequest) -> bool:
        return (self.device_id, self.name, dict(self.params)) == (
            other.device_id,
            other.name,
            dict(other.params),
        )


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command as persisted: the request and its latest result."""

    request: CommandRequest
    result: CommandResult
    created_at: int


# What `CommandBook.begin` decides.
@dataclass(frozen=True, slots=True)
class Publish:
    """Send this command to the device, then wait for its ack."""

    record: CommandRecord
    command: Command


@dataclass(frozen=True, slots=True)
class Join:
    """The same id is already in flight: wait for its ack."""

    command_id: str


@dataclass(frozen=True, slots=True)
class Finished:
    """Nothing to send: this is the answer (`fresh` if it must be recorded)."""

    record: CommandRecord
    fresh: bool = False


Decision = Publish | Join | Finished


@dataclass(slots=True)
class _Pending:
    record: CommandRecord
    sent_at: int


@dataclass
class CommandBook:
    """Sans-I/O state of every command this gateway knows about."""

    max_in_flight: int = 4096
    remember: int = 20_000
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _finished: OrderedDict[str, CommandRecord] = field(default_factory=OrderedDict)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def record(self, command_id: str) -> CommandRecord:
        """The latest record of a command this book knows."""
        pending = self._pending.get(command_id)
        return pending.record if pending is not None else self._finished[command_id]

    def known(self, command_id: str) -> bool:
        return command_id in self._pending or command_id in self._finished

    def begin(
        self, request: CommandRequest, now: int, *, previous: CommandRecord | None = None
    ) -> Decision:
        """Decide what to do with a request; `previous` is what the store knows of its id."""
        pending = self._pending.get(request.command_id)
        if pending is not None:
            self._check_same(pending.record.request, request)
            return Join(request.command_id)
        previous = self._finished.get(request.command_id, previous)
        if previous is not None:
            self._check_same(previous.request, request)
            request = previous.request  # the first request's expiry stands
            if previous.result.status in FINAL:
                return Finished(previous)
        if request.expires_at <= now:
            record = self._finish(
                request, CommandStatus.EXPIRED, now, error="expired before it could be sent"
            )
            return Finished(record, fresh=True)
        if len(self._pending) >= self.max_in_flight:
            raise Unavailable(f"{len(self._pending)} commands in flight; try again shortly")
        record = CommandRecord(
            request=request,
            result=CommandResult(request.command_id, request.device_id, CommandStatus.PENDING),
            created_at=previous.created_at if previous else now,
        )
        self._pending[request.command_id] = _Pending(record, now)
        self._finished.pop(request.command_id, None)
        command = Command(
            id=request.command_id,
            name=request.name,
            params=request.params,
            expires_at=request.expires_at,
        )
        return Publish(record, command)

    def on_ack(self, device_id: str, ack: Ack, now: int) -> CommandRecord | None:
        """A device acknowledged; None if the ack matches nothing we sent it."""
        pending = self._pending.get(ack.id)
        if pending is not None:
            request = pending.record.request
        else:
            # A late ack after a timeout still tells the truth about the command.
            finished = self._finished.get(ack.id)
            if finished is None or finished.result.status is not CommandStatus.TIMED_OUT:
                return None
            request = finished.request
        if request.device_id != device_id:
            return None  # one device must not answer for another
        status = {
            AckStatus.OK: CommandStatus.SUCCEEDED,
            AckStatus.ERROR: CommandStatus.FAILED,
            AckStatus.EXPIRED: CommandStatus.EXPIRED,
        }[ack.status]
        return self._finish(request, status, now, result=ack.result, error=ack.error)

    def on_deadline(
        self, command_id: str, now: int, reason: str = "no ack before the deadline"
    ) -> CommandRecord | None:
        """Nobody waits any more (deadline, failed send); None if already finished."""
        pending = self._pending.get(command_id)
        if pending is None:
            return None
        return self._finish(pending.record.request, CommandStatus.TIMED_OUT, now, error=reason)

    def _finish(
        self,
        request: CommandRequest,
        status: CommandStatus,
        now: int,
        *,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> CommandRecord:
        pending = self._pending.pop(request.command_id, None)
        created = pending.record.created_at if pending else now
        record = CommandRecord(
            request=request,
            result=CommandResult(
                command_id=request.command_id,
                device_id=request.device_id,
                status=status,
                result=result,
                error=error,
                completed_at=now,
            ),
            created_at=created,
        )
        self._finished[request.command_id] = record
        self._finished.move_to_end(request.command_id)
        while len(self._finished) > self.remember:
            self._finished.popitem(last=False)
        return record

    @staticmethod
    def _check_same(first: CommandRequest, again: CommandRequest) -> None:
        if not first.same_as(again):
            raise CommandIdReusedError(again.command_id, first.name, first.device_id)


def command_payload(request: CommandRequest) -> bytes:
    """The command as its device will receive it; `InvalidRequest` if the protocol refuses it.

    The device's own decoder judges the encoded payload, so what the gateway
    sends is exactly what the protocol allows (names, at most 32 flat params,
    text and number limits, 4,096 bytes): a command a device would drop is
    refused here, before it reaches the broker.
    """
    command = Command(request.command_id, request.name, request.params, request.expires_at)
    try:
        payload = codec.encode_command(command)
        codec.decode_command(payload)
    except DecodeError as exc:
        raise InvalidRequest(f"command: {exc.detail}") from None
    except (TypeError, ValueError) as exc:  # what JSON cannot hold (NaN, objects)
        raise InvalidRequest(f"command: params cannot be encoded: {exc}") from None
    return payload


def new_command_id() -> str:
    return uuid.uuid4().hex


def expiring_request(
    *,
    device_id: str,
    name: str,
    params: Mapping[str, Any],
    ttl_s: float,
    command_id: str | None = None,
    now: int,
    requested_by: str = "",
) -> CommandRequest:
    """A request that expires `ttl_s` after `now`; a new id unless one is given."""
    return CommandRequest(
        command_id=command_id or new_command_id(),
        device_id=device_id,
        name=name,
        params=dict(params),
        expires_at=now + int(ttl_s * 1000),
        requested_by=requested_by,
    )


__all__ = [
    "FINAL",
    "CommandBook",
    "CommandRecord",
    "CommandRequest",
    "Decision",
    "Finished",
    "Join",
    "Publish",
    "command_payload",
    "expiring_request",
    "fleet_command_id",
    "new_command_id",
]
