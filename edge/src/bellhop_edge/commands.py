"""Runs commands against devices: the asyncio driver over `core.commands`.

`CommandService` asks the sans-I/O `CommandBook` what to do with a request,
publishes the command on MQTT, waits for the device's ack up to a deadline
and hands every record to `persist` (the store writer) and `notify` (live
watchers). The rules it enforces (at most once per id, never after expiry,
a retry joins or returns the first result) are the book's; see its docstring.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from bellhop_devices import codec
from bellhop_devices.messages import Ack, Channel

from bellhop_edge.clock import now_ms
from bellhop_edge.core.commands import (
    CommandBook,
    CommandRecord,
    CommandRequest,
    Finished,
    Publish,
    command_payload,
)
from bellhop_edge.core.model import CommandResult, CommandStatus
from bellhop_edge.errors import EdgeError, Unavailable

__all__ = ["CommandService", "run_fleet"]

log = logging.getLogger(__name__)


class CommandService:
    """Runs commands against devices over MQTT; one per gateway."""

    def __init__(
        self,
        *,
        hotel_id: str,
        book: CommandBook,
        publish: Callable[[str, bytes, int], Any],
        load: Callable[[str], CommandRecord | None],
        persist: Callable[[CommandRecord], None],
        notify: Callable[[CommandRecord], None],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._hotel_id = hotel_id
        self._book = book
        self._publish = publish
        self._load = load
        self._persist = persist
        self._notify = notify
        self._clock = clock
        self._waiters: dict[str, asyncio.Future[CommandRecord]] = {}

    @property
    def in_flight(self) -> int:
        return self._book.in_flight

    def lookup(self, command_id: str) -> CommandRecord | None:
        """The latest record of a command, whichever path sent it; None if never seen.

        The book's first: it is current the moment a result arrives, before the
        store has committed it; the store's for ids the book forgot (older ones,
        and those from before a restart).
        """
        if self._book.known(command_id):
            return self._book.record(command_id)
        return self._load(command_id)

    async def execute(self, request: CommandRequest, *, timeout: float) -> CommandRecord:
        """Send (at most once) and wait for the ack up to `timeout` seconds."""
        command_payload(request)  # refused here if the device protocol would refuse it
        now = self._clock()
        previous = None if self._book.known(request.command_id) else self._load(request.command_id)
        decision = self._book.begin(request, now, previous=previous)
        if isinstance(decision, Finished):
            if decision.fresh:
                self._record(decision.record)
            return decision.record
        if isinstance(decision, Publish):
            waiter: asyncio.Future[CommandRecord] = asyncio.get_running_loop().create_future()
            self._waiters[request.command_id] = waiter
            topic = codec.topic(self._hotel_id, request.device_id, Channel.CMD)
            try:
                self._persist(decision.record)
                await self._publish(topic, codec.encode_command(decision.command), 1)
            except BaseException as exc:
                # Sent or not, the command must not stay "in flight" for ever.
                gone = isinstance(exc, asyncio.CancelledError)  # no words of its own
                why = "the caller went away while it was being sent" if gone else str(exc)
                record = self._book.on_deadline(request.command_id, self._clock(), why)
                if record is not None:
                    self._record(record)
                if isinstance(exc, Exception):
                    raise Unavailable(f"could not send the command: {exc}") from exc
                raise
        else:
            # The ack may already have arrived while the first caller's publish
            # was still waiting for the broker's PUBACK.
            joined = self._waiters.get(request.command_id)
            if joined is None:
                return self._book.record(request.command_id)
            waiter = joined
        return await self._wait_for_ack(request.command_id, waiter, timeout)

    async def _wait_for_ack(
        self, command_id: str, waiter: asyncio.Future[CommandRecord], timeout: float
    ) -> CommandRecord:
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.CancelledError:
            # The caller went away (a closed app, a cancelled fleet): the
            # command must not keep occupying an in-flight slot.
            self._give_up(command_id)
            raise
        except TimeoutError:
            record = self._give_up(command_id)
            if record is not None:
                return record
            return await asyncio.wait_for(waiter, 1.0)  # the ack arrived at the deadline

    def _give_up(self, command_id: str) -> CommandRecord | None:
        record = self._book.on_deadline(command_id, self._clock())
        if record is not None:
            self._record(record)
        return record

    def on_ack(self, device_id: str, ack: Ack) -> bool:
        """Feed an ack from MQTT; False when it matched nothing (counted by the caller)."""
        record = self._book.on_ack(device_id, ack, self._clock())
        if record is None:
            return False
        self._record(record)
        return True

    def _record(self, record: CommandRecord) -> None:
        # Waiters first: a failing write must not leave a caller hanging.
        waiter = self._waiters.pop(record.request.command_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(record)
        self._notify(record)
        try:
            self._persist(record)
        except EdgeError:
            log.exception("could not record the result of command %s", record.request.command_id)

    def cancel_all(self) -> None:
        for waiter in self._waiters.values():
            waiter.cancel()
        self._waiters.clear()


async def run_fleet(
    service: CommandService,
    requests: list[CommandRequest],
    *,
    timeout: float,
    max_in_flight: int,
) -> list[CommandRecord]:
    """Run many commands with at most `max_in_flight` waiting for an ack at once."""
    gate = asyncio.Semaphore(max_in_flight)

    async def one(request: CommandRequest) -> CommandRecord:
        async with gate:
            try:
                return await service.execute(request, timeout=timeout)
            except EdgeError as exc:
                return CommandRecord(
                    request,
                    CommandResult(
                        request.command_id,
                        request.device_id,
                        CommandStatus.FAILED,
                        error=str(exc),
                        completed_at=now_ms(),
                    ),
                    now_ms(),
                )

    return list(await asyncio.gather(*(one(r) for r in requests)))
