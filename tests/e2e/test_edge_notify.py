"""The gateway's local notification channel, with no relay at all: a real gateway process,
broker, webhook receiver and SMTP server on loopback standing in for the hotel's LAN.

`[notify]` lists a closed port first, then the webhook, then the SMTP server. A breach
reaches the webhook after the closed port failed twice. Then the gateway is killed with
SIGKILL while the webhook holds the request open; after the restart the webhook has had
exactly one request (the send is settled `unknown`, never repeated) and the SMTP server
tells the staff instead (nothing lost).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

import pytest
from bellhop_devices.messages import Channel

from tests.integration.edge.conftest import FakeDevice, device_client
from tests.support.edge_process import EdgeProcess, until, write_config
from tests.support.mosquitto import MosquittoBroker, free_port
from tests.support.relay_process import bytecode_cache
from tests.support.smtp import SmtpReceiver
from tests.support.webhook import WebhookReceiver

pytestmark = [pytest.mark.timeout(90)]

HOTEL: Final = "lan-notify"
DOOR: Final = "r101-door"
SECRET: Final = "lan-hook-password"


@pytest.fixture(autouse=True)
def _bytecode(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    bytecode_cache(tmp_path_factory, monkeypatch)


def notify_section(hook: WebhookReceiver, smtp: SmtpReceiver) -> str:
    closed = f"json://127.0.0.1:{free_port()}/nobody"  # nothing listens: every send fails
    # The webhook's URL carries a password: it must never reach the gateway's log.
    webhook = f"json://staff:{SECRET}@127.0.0.1:{hook.port}/desk"
    channels = ", ".join(f'"{u}"' for u in (closed, webhook, smtp.apprise_url("desk@hotel.test")))
    return (
        "[notify]\n"
        f"channels = [{channels}]\n"
        'kinds = ["breach"]\n'
        "poll_s = 0.05\nsend_timeout_s = 2\nretry_base_s = 0.1\nretry_max_s = 0.2\nattempts = 2\n"
    )


@asynccontextmanager
async def site(
    tmp_path: Path, mosquitto: MosquittoBroker, hook: WebhookReceiver, smtp: SmtpReceiver
) -> AsyncIterator[tuple[EdgeProcess, FakeDevice]]:
    gateway = mosquitto.add_gateway(HOTEL)
    creds = mosquitto.add_devices(HOTEL, [DOOR])[DOOR]
    mosquitto.reload()
    config = tmp_path / "gateway" / "edge.toml"
    config.parent.mkdir()
    write_config(
        config,
        hotel_id=HOTEL,
        mosquitto=mosquitto,
        gateway=gateway,
        devices={DOOR: "door_sensor"},
        extra=notify_section(hook, smtp),
    )
    edge = EdgeProcess(config)
    edge.start()
    try:
        await until(lambda: edge.subscribed() >= 1, 30, "the gateway subscribed")
        async with device_client(mosquitto, HOTEL, DOOR, creds) as client:
            yield edge, FakeDevice(HOTEL, DOOR, client)
    finally:
        edge.stop()
        assert SECRET not in edge.log.read_text()


async def breach(door: FakeDevice) -> None:
    body = {"v": 1, "ts": int(time.time() * 1000), "kind": "breach", "data": {}}
    await door.send(Channel.EVENT, body)


def attempts(edge: EdgeProcess) -> list[tuple[str, str, int, str]]:
    """(alert, channel, attempt, outcome), oldest first, from the gateway's store."""
    db = sqlite3.connect(f"file:{edge.database}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(
            "SELECT n.alert_id, n.channel_id, t.number, t.outcome FROM notify_attempts t"
            " JOIN notifications n ON n.id = t.notification_id ORDER BY t.started_ms, t.rowid"
        ).fetchall()
    finally:
        db.close()


def states(edge: EdgeProcess) -> dict[str, str]:
    db = sqlite3.connect(f"file:{edge.database}?mode=ro", uri=True, timeout=5)
    try:
        return dict(db.execute("SELECT channel_id, state FROM notifications").fetchall())
    finally:
        db.close()


async def test_an_alert_reaches_the_lan_webhook_with_no_relay_after_a_failing_channel(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    async with (
        WebhookReceiver() as hook,
        SmtpReceiver() as smtp,
        site(tmp_path, mosquitto, hook, smtp) as (edge, door),
    ):
        # Raised once the notifier is on: queued by the store's trigger with the alert.
        await until(lambda: edge.logged("local notifications on") == 1, 30, "notifier on")
        await breach(door)
        (got,) = await hook.wait_for(1)
        assert got.body["title"] == "Bellhop: critical breach in room 101"
        await until(lambda: states(edge).get("ch3") == "skipped", 10, "the rows settled")
        ((alert_id, *_), *_) = attempts(edge)
        assert got.key == f"{HOTEL}/{alert_id}/raised/on-site/ch2"
        assert got.path == "/desk"
        assert attempts(edge) == [
            (alert_id, "ch1", 1, "failed"),
            (alert_id, "ch1", 2, "failed"),
            (alert_id, "ch2", 1, "sent"),
        ]
        assert states(edge) == {"ch1": "failed", "ch2": "sent", "ch3": "skipped"}
        assert smtp.mails == []


async def test_a_gateway_killed_mid_send_sends_nothing_twice_and_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoBroker
) -> None:
    async with (
        WebhookReceiver() as hook,
        SmtpReceiver() as smtp,
        site(tmp_path, mosquitto, hook, smtp) as (edge, door),
    ):
        hook.hold()  # the webhook takes the request and does not answer
        await breach(door)
        await hook.wait_for(1)
        edge.kill()  # mid-send: the row is `sending`, its attempt written before the send
        hook.release()
        edge.start()
        # Once the lease ran out the send is settled `unknown`; the mail tells the staff.
        (mail,) = await smtp.wait_for(1, timeout=30)
        assert mail.recipients == ("desk@hotel.test",)
        await until(lambda: states(edge).get("ch3") == "sent", 10, "the mail recorded")
        ((alert_id, *_), *_) = attempts(edge)
        assert alert_id in mail.text
        assert attempts(edge) == [
            (alert_id, "ch1", 1, "failed"),
            (alert_id, "ch1", 2, "failed"),
            (alert_id, "ch2", 1, "unknown"),
            (alert_id, "ch3", 1, "sent"),
        ]
        # Every row is final: `unknown` is never claimed again.
        assert states(edge) == {"ch1": "failed", "ch2": "unknown", "ch3": "sent"}
        assert len(hook.requests) == 1
        assert len(smtp.mails) == 1
        assert edge.logged("interrupted by a stop") == 1
