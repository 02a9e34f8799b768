"""Running a notifier off the event loop: its sends in threads, under a timeout, and its
stop. Shared by the relay's worker (bellhop_cloud/notify/worker.py) and the gateway's
local channel (bellhop_edge/notify.py), which differ in their stores, not in this.

    async with send_threads(4, "notify") as threads:
        why = await send_within(threads, url, title, body, key, reach=channels.LAN, timeout_s=10)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ThreadPoolExecutor

from bellhop_bridge import notify_channels as channels

__all__ = ["send_threads", "send_within", "stop_loop"]


@contextlib.asynccontextmanager
async def send_threads(workers: int, prefix: str) -> AsyncIterator[ThreadPoolExecutor]:
    """The send threads; a send still running when the block ends is not waited for
    (its row is settled from its lease)."""
    await asyncio.to_thread(channels.warm)  # before the send threads may race to it
    threads = ThreadPoolExecutor(workers, thread_name_prefix=prefix)
    try:
        yield threads
    finally:
        threads.shutdown(wait=False, cancel_futures=True)


async def send_within(
    threads: Executor,
    url: str,
    title: str,
    body: str,
    key: str,
    *,
    reach: channels.Reach,
    timeout_s: float,
) -> str | None:
    """None if the channel accepted it, else why not (a fixed text, no secret). Apprise
    blocks, so the send runs in one of `threads`; one that outlasts `timeout_s` is given
    up on (its thread runs on, bounded by Apprise's own timeouts)."""
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(threads, channels.send, url, title, body, key, reach)
    try:
        return await asyncio.wait_for(work, timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"


async def stop_loop(task: asyncio.Task[None], stopping: asyncio.Event, wait_s: float) -> None:
    """Stop a notifier's loop: a pass under way may finish within `wait_s` (its sends are
    bounded by their timeout), so that a clean stop leaves no row `sending`; whatever is
    left then is cancelled."""
    stopping.set()
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(asyncio.shield(task), wait_s)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
