"""Closing the relay's store while work is in flight: every connection is closed.

A PostgreSQL connection left open by a close that did not wait is closed later by
the garbage collector (an unclosed socket warning, which this suite turns into an
error), and on the server it lingers until then.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.reads import PostgresDeviceReader
from bellhop_cloud.db.store import Store
from bellhop_cloud.errors import StoreUnavailable
from sqlalchemy.engine import make_url

from tests.support.postgres import url
from tests.support.waiting import until


async def test_close_waits_for_a_read_in_flight_then_refuses_new_work(
    relay_config: RelayConfig,
) -> None:
    store = Store.open(relay_config)
    await store.migrate()
    inside = asyncio.Event()
    release = asyncio.Event()

    async def reader() -> int:
        async with store.read() as conn:
            inside.set()
            await release.wait()
            return int((await conn.execute(sa.text("SELECT 41 + 1"))).scalar_one())

    task = asyncio.create_task(reader())
    await asyncio.wait_for(inside.wait(), 10)
    closing = asyncio.create_task(store.close())

    async def refused() -> bool:
        try:
            async with store.read():
                return False
        except StoreUnavailable as exc:
            return "closed" in str(exc)

    # The close is waiting for the read; new work is refused meanwhile.
    await until(refused, 10, "new work refused once the close began")
    assert not closing.done()
    release.set()
    assert await asyncio.wait_for(task, 10) == 42
    await asyncio.wait_for(closing, 10)
    gc.collect()  # an unclosed connection would warn here, failing the test


@pytest.mark.postgres
async def test_device_reads_closed_while_connecting_leave_no_connection(
    postgres_database: str,
) -> None:
    reader = PostgresDeviceReader(
        make_url(url(postgres_database)), schema=None, pool_size=3, timeout_s=5
    )
    reads = [
        asyncio.create_task(reader.one("htl_x", f"dev_{n}", stale_before=datetime.now(UTC)))
        for n in range(3)
    ]
    await asyncio.sleep(0)  # one turn: each read is now connecting
    await reader.close()
    results = await asyncio.wait_for(asyncio.gather(*reads, return_exceptions=True), 10)
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    gc.collect()  # an unclosed connection would warn here, failing the test

    async def others() -> int:
        conn = await asyncpg.connect(url(postgres_database), timeout=5)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        finally:
            await conn.close()

    async def none_left() -> bool:
        return await others() == 0

    await until(none_left, 10, "no connection of the closed reads left on the server")
