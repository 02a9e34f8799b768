"""A remote command's path on a node: its transaction is on the disk before its caller
hears (Store.flushed), and a gateway's direct answer is taken while a batch is applied
(bridge/batches.py)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import Acked, CommandReceived, Opened
from bellhop_cloud import audit
from bellhop_cloud.audit import AuditAction
from bellhop_cloud.bridge.batches import Applier
from bellhop_cloud.config import RelayConfig
from bellhop_cloud.db.schema import audit_log
from bellhop_cloud.db.store import Store
from bellhop_cloud.relay import Relay
from sqlalchemy.engine import Connection

from tests.cloud.bridging import BULK, Bridge, CloudHotel, RawGateway
from tests.cloud.support import expect
from tests.support.postgres import admin, url


def _write_entry(conn: Connection) -> None:
    conn.execute(audit_log.insert(), audit.entry_rows(AuditAction.COMMAND_SENT, orgs=[None]))


async def _scalar(relay: Relay, sql: str) -> Any:
    async with relay.store.read() as conn:
        return (await conn.execute(sa.text(sql))).scalar()


# SQLite's commits never wait for the disk here (synchronous=NORMAL): nothing to flush.
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_flushed_puts_every_commit_before_it_on_the_disk(relay: Relay) -> None:
    # A commit that does not wait for the disk, as a command's own (`run_alone`).
    await relay.store.run_alone(_write_entry)
    written = await _scalar(relay, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
    await relay.store.flushed()
    flushed = await _scalar(relay, "SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn")
    assert flushed >= written


async def test_a_direct_answer_is_taken_while_a_batch_is_being_applied(
    hotel: CloudHotel, bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The batches that follow the device's registry wait here until released: the
    # bridge's reader must go on reading meanwhile (the apply runs beside it).
    held, release = asyncio.Event(), asyncio.Event()
    batch = Applier.batch

    async def held_batch(self: Applier, *args: Any) -> None:
        if held.is_set():
            await release.wait()
        await batch(self, *args)

    monkeypatch.setattr(Applier, "batch", held_batch)
    async with RawGateway.opened(bridge.url, hotel.gateway_id, hotel.hotel_id, hotel.key) as raw:
        await raw.until_event(Opened)
        await raw.register_thermostat()
        await hotel.online("r101-thermostat")
        held.set()
        reading = bridge_pb2.OutboxEvent(seq=2, lane=BULK)
        reading.telemetry.device_id = "r101-thermostat"
        reading.telemetry.metric = "temperature_c"
        reading.telemetry.value = 21.0
        reading.telemetry.ts.FromMilliseconds(1_700_000_000_000)
        await raw.send_batch([reading])

        url = f"/v1/hotels/{hotel.hotel_id}/devices/r101-thermostat/commands"
        body = {"name": "set_setpoint", "params": {"setpoint_c": 21.5}, "command_id": "c-1"}
        post = hotel.api.http.post(url, json=body, headers=hotel.owner.headers)
        answer = asyncio.create_task(post)
        received = await raw.until_event(CommandReceived)
        result = common_pb2.CommandResult(
            command_id=received.command.command.command_id,
            device_id="r101-thermostat",
            status=common_pb2.COMMAND_STATUS_SUCCEEDED,
        )
        raw.conn.send_command_result(
            bridge_pb2.RemoteCommandResult(result=result), asyncio.get_running_loop().time()
        )
        await raw.flush()
        # Answered while the batch read before the answer waits to be applied (and so
        # is not acknowledged yet).
        assert expect(await answer, 200)["state"] == "succeeded"
        assert raw.conn.in_flight() == 1
        release.set()
        acked = await raw.until_event(Acked)
        assert (acked.lane, acked.seq) == (BULK, 2)
        assert raw.conn.in_flight() == 0


@pytest.mark.postgres
async def test_commits_wait_for_the_disk_whatever_the_database_says(tmp_path: Path) -> None:
    """An operator's `synchronous_commit = off` on the database (or the role) would make
    every commit, and `flushed` with them, return before the disk has them: the store
    sets it back for its own connections, but for `run_relaxed`'s."""
    name = f"bellhop_sync_{secrets.token_hex(6)}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        await admin(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        config = RelayConfig(database_url=url(name), signing_key_path=tmp_path / "key.pem")
        store = Store.open(config)
        try:
            show = sa.text("SHOW synchronous_commit")
            async with store.read() as conn:
                read = (await conn.execute(show)).scalar()
            async with store.write() as conn:
                written = (await conn.execute(show)).scalar()
            relaxed = await store.run_relaxed(lambda conn: conn.execute(show).scalar())
        finally:
            await store.close()
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert (read, written, relaxed) == ("on", "on", "off")
