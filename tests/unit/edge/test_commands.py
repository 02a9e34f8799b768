"""The command bookkeeping core: at most once per id, never after expiry."""

from __future__ import annotations

import pytest
from bellhop_devices.messages import Ack, AckStatus
from bellhop_edge.core.commands import (
    CommandBook,
    CommandRecord,
    CommandRequest,
    Finished,
    Join,
    Publish,
)
from bellhop_edge.core.model import CommandResult, CommandStatus
from bellhop_edge.errors import Conflict, Unavailable

NOW = 1_700_000_000_000


def request(
    command_id: str = "c1", *, expires_at: int = NOW + 30_000, **params: object
) -> CommandRequest:
    return CommandRequest(command_id, "r101-light", "set_light", params or {"on": True}, expires_at)


def test_new_command_is_published_once_and_retries_join() -> None:
    book = CommandBook()
    first = book.begin(request(), NOW)
    assert isinstance(first, Publish)
    assert first.command.id == "c1"
    assert first.command.expires_at == NOW + 30_000
    assert book.begin(request(), NOW + 5) == Join("c1")
    assert book.in_flight == 1


def test_ack_finishes_and_a_retry_returns_the_first_result() -> None:
    book = CommandBook()
    book.begin(request(), NOW)
    record = book.on_ack("r101-light", Ack("r101-light", "c1", AckStatus.OK, {"on": True}), NOW + 3)
    assert record is not None
    assert record.result.status is CommandStatus.SUCCEEDED
    assert record.result.result == {"on": True}
    again = book.begin(request(), NOW + 10)
    assert isinstance(again, Finished)
    assert again.record is record
    assert not again.fresh


def test_expired_command_is_never_sent() -> None:
    book = CommandBook()
    decision = book.begin(request(expires_at=NOW), NOW)
    assert isinstance(decision, Finished)
    assert decision.fresh
    assert decision.record.result.status is CommandStatus.EXPIRED
    assert book.in_flight == 0


def test_retry_after_timeout_republishes_same_id_until_expiry() -> None:
    book = CommandBook()
    book.begin(request(), NOW)
    timed_out = book.on_deadline("c1", NOW + 5_000)
    assert timed_out is not None
    assert timed_out.result.status is CommandStatus.TIMED_OUT
    retry = book.begin(request(expires_at=NOW + 99_999), NOW + 6_000)
    assert isinstance(retry, Publish)
    # The first request's expiry stands, whatever the retry asks for.
    assert retry.command.expires_at == NOW + 30_000
    book.on_deadline("c1", NOW + 11_000)
    late = book.begin(request(), NOW + 31_000)
    assert isinstance(late, Finished)
    assert late.record.result.status is CommandStatus.EXPIRED


def test_late_ack_after_timeout_records_the_truth() -> None:
    book = CommandBook()
    book.begin(request(), NOW)
    book.on_deadline("c1", NOW + 5_000)
    record = book.on_ack(
        "r101-light", Ack("r101-light", "c1", AckStatus.ERROR, error="relay stuck"), NOW + 6_000
    )
    assert record is not None
    assert record.result.status is CommandStatus.FAILED
    assert record.result.error == "relay stuck"


def test_ack_from_another_device_is_ignored() -> None:
    book = CommandBook()
    book.begin(request(), NOW)
    assert book.on_ack("r102-light", Ack("r102-light", "c1", AckStatus.OK), NOW + 1) is None
    assert book.in_flight == 1


def test_unknown_ack_matches_nothing() -> None:
    assert CommandBook().on_ack("r101-light", Ack("r101-light", "nope", AckStatus.OK), NOW) is None


def test_same_id_with_other_content_is_a_conflict() -> None:
    book = CommandBook()
    book.begin(request(on=True), NOW)
    with pytest.raises(Conflict, match="already used"):
        book.begin(request(on=False), NOW)


def test_stored_result_from_before_a_restart_is_returned() -> None:
    stored = CommandRecord(
        request(),
        CommandResult("c1", "r101-light", CommandStatus.SUCCEEDED, {"on": True}, None, NOW + 2),
        NOW,
    )
    decision = CommandBook().begin(request(), NOW + 60_000, previous=stored)
    assert isinstance(decision, Finished)
    assert decision.record is stored


def test_in_flight_limit() -> None:
    book = CommandBook(max_in_flight=2)
    book.begin(request("a"), NOW)
    book.begin(request("b"), NOW)
    with pytest.raises(Unavailable, match="in flight"):
        book.begin(request("c"), NOW)


def test_finished_memory_is_bounded() -> None:
    book = CommandBook(remember=3)
    for i in range(10):
        book.begin(request(f"id{i}"), NOW)
        book.on_deadline(f"id{i}", NOW + 1)
    assert not book.known("id0")
    assert book.known("id9")


async def test_service_handles_an_ack_that_beats_the_publish_confirmation() -> None:
    from bellhop_edge.commands import CommandService

    persisted: list[CommandRecord] = []
    service: CommandService

    async def publish(topic: str, payload: bytes, qos: int) -> None:
        # The device answers before the broker's PUBACK reaches the gateway.
        assert service.on_ack("r101-light", Ack("r101-light", "c1", AckStatus.OK, {"on": True}))

    service = CommandService(
        hotel_id="h1",
        book=CommandBook(),
        publish=publish,
        load=lambda _: None,
        persist=persisted.append,
        notify=lambda _: None,
        clock=lambda: NOW,
    )
    record = await service.execute(request(), timeout=1.0)
    assert record.result.status is CommandStatus.SUCCEEDED
    assert [r.result.status for r in persisted] == [CommandStatus.PENDING, CommandStatus.SUCCEEDED]


async def test_service_times_out_without_an_ack() -> None:
    from bellhop_edge.commands import CommandService

    sent: list[str] = []

    async def publish(topic: str, payload: bytes, qos: int) -> None:
        sent.append(topic)

    service = CommandService(
        hotel_id="h1",
        book=CommandBook(),
        publish=publish,
        load=lambda _: None,
        persist=lambda _: None,
        notify=lambda _: None,
        clock=lambda: NOW,
    )
    record = await service.execute(request(), timeout=0.05)
    assert record.result.status is CommandStatus.TIMED_OUT
    assert sent == ["hotel/h1/device/r101-light/cmd"]


async def test_a_caller_that_goes_away_frees_its_in_flight_slot() -> None:
    import asyncio

    from bellhop_edge.commands import CommandService

    published = asyncio.Event()

    async def publish(topic: str, payload: bytes, qos: int) -> None:
        published.set()

    book = CommandBook(max_in_flight=1)
    service = CommandService(
        hotel_id="h1",
        book=book,
        publish=publish,
        load=lambda _: None,
        persist=lambda _: None,
        notify=lambda _: None,
        clock=lambda: NOW,
    )
    waiting = asyncio.create_task(service.execute(request("a"), timeout=30))
    await asyncio.wait_for(published.wait(), 5)  # sent: now it waits for the ack
    assert book.in_flight == 1
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert book.in_flight == 0
    record = await service.execute(request("b"), timeout=0.01)
    assert record.result.status is CommandStatus.TIMED_OUT


async def test_a_caller_gone_while_its_command_is_sent_leaves_a_record_saying_so() -> None:
    import asyncio

    from bellhop_edge.commands import CommandService

    sending, never = asyncio.Event(), asyncio.Event()
    recorded: list[str | None] = []

    async def publish(topic: str, payload: bytes, qos: int) -> None:
        sending.set()
        await never.wait()  # the broker link not back yet

    service = CommandService(
        hotel_id="h1",
        book=CommandBook(max_in_flight=1),
        publish=publish,
        load=lambda _: None,
        persist=lambda record: recorded.append(record.result.error),
        notify=lambda _: None,
        clock=lambda: NOW,
    )
    waiting = asyncio.create_task(service.execute(request("a"), timeout=30))
    await asyncio.wait_for(sending.wait(), 5)
    waiting.cancel()  # a LAN call's deadline
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert recorded[-1] == "the caller went away while it was being sent"
