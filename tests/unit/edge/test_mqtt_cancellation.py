"""A task publishing through aiomqtt stops when cancelled, even when the cancellation lands
as the broker's answer arrives: Python 3.11's `asyncio.wait_for` (aiomqtt's wait for a
PUBACK or SUBACK) drops it then, and the link raises it again after the call."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest
from bellhop_edge.mqtt.link import _cancellations, _honour_cancellation


async def _cancelled_as_answered(*, honour: bool) -> list[str]:
    """A task awaiting an answer the way aiomqtt does, cancelled as the answer arrives;
    what it did after the call."""
    answer = asyncio.get_running_loop().create_future()  # the PUBACK
    after: list[str] = []

    async def publishing() -> None:
        before = _cancellations()
        waiting.set()  # and nothing in between: the test runs again once this task waits
        await asyncio.wait_for(answer, 10)
        if honour:
            _honour_cancellation(before)
        after.append("went on")

    waiting = asyncio.Event()
    task = asyncio.create_task(publishing())
    await asyncio.wait_for(waiting.wait(), 5)  # the task now waits for its answer
    answer.set_result(None)
    task.cancel()  # lands before the task resumes
    await asyncio.gather(task, return_exceptions=True)
    return after


async def test_a_cancellation_landing_as_the_answer_arrives_stops_the_task() -> None:
    assert await _cancelled_as_answered(honour=True) == []


async def test_a_cancellation_pending_from_before_the_call_is_not_raised_again() -> None:
    # A count left raised (Python 3.11's TaskGroup after a child failed): not this call's.
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):  # caught, as a TaskGroup may
        await asyncio.Event().wait()  # takes the cancellation at once
    before = _cancellations()
    assert before == 1
    _honour_cancellation(before)  # raises nothing
    task.uncancel()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps it from 3.12")
async def test_without_the_guard_python_3_11_drops_that_cancellation() -> None:
    # Why the guard is there: the same task goes on as if it had not been cancelled.
    assert await _cancelled_as_answered(honour=False) == ["went on"]
