"""The gateway's notification queue on a real store: the trigger that queues an alert in
the transaction that writes it, the shared schedule's steps (retries, the next channel,
an acknowledgement cancelling what is unsent) and what turning `[notify]` on and off does.

Passes are driven by the test (`run_once(now)`), sending to a webhook receiver on
loopback and to a port where nothing listens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bellhop_edge.config import EdgeConfig, load_config
from bellhop_edge.core.model import Alert, AlertKind, AlertSeverity, AlertState
from bellhop_edge.core.ops import PutAlert
from bellhop_edge.notify import LocalNotifier
from bellhop_edge.store import EdgeStore

from tests.support.mosquitto import free_port
from tests.support.webhook import WebhookReceiver

T0 = 1_800_000_000_000


def alert(alert_id: str, kind: AlertKind = AlertKind.BREACH, **more: Any) -> Alert:
    return Alert(
        alert_id=alert_id,
        kind=kind,
        severity=more.pop("severity", AlertSeverity.CRITICAL),
        state=AlertState.RAISED,
        device_id="r101-door",
        room_id="101",
        message="door breach",
        raised_at=T0,
        **more,
    )


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


def configure(tmp_path: Path, *urls: str, **notify: Any) -> EdgeConfig:
    settings = {"channels": list(urls), "retry_base_s": 1, "attempts": 2, **notify}
    return load_config(overrides={"hotel_id": "h1", "data_dir": str(tmp_path), "notify": settings})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EdgeStore]:
    with EdgeStore.open(tmp_path / "edge.db") as opened:
        yield opened


def rows(config: EdgeConfig) -> dict[tuple[str, str], str]:
    with sqlite3.connect(config.database_path) as db:
        found = db.execute("SELECT alert_id, channel_id, state FROM notifications").fetchall()
    return {(a, c): s for a, c, s in found}


async def test_an_alert_written_is_queued_by_the_trigger_and_sent_once(
    tmp_path: Path, store: EdgeStore, hook: WebhookReceiver
) -> None:
    config = configure(tmp_path, hook.apprise_url("/desk"), kinds=["breach", "gas"])
    async with LocalNotifier.opened(config) as notifier:
        store.apply(PutAlert(alert("a1")), PutAlert(alert("a2", AlertKind.BATTERY_LOW)))
        # Written again as raised (a room change, a replay): queued once all the same.
        store.apply(PutAlert(replace(alert("a1"), message="door breach again")))
        assert await notifier.run_once(T0) == 1
        assert await notifier.run_once(T0 + 60_000) == 0
    (got,) = hook.requests
    assert got.key == "h1/a1/raised/on-site/ch1"
    assert got.body["title"] == "Bellhop: critical breach in room 101"
    assert rows(config) == {("a1", "ch1"): "sent"}  # battery_low is not wanted


async def test_a_failing_channel_is_retried_then_the_next_one_delivers(
    tmp_path: Path, store: EdgeStore, hook: WebhookReceiver
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/nobody"
    config = configure(tmp_path, closed, hook.apprise_url())
    async with LocalNotifier.opened(config) as notifier:
        store.apply(PutAlert(alert("a1")))
        assert await notifier.run_once(T0) == 1
        assert await notifier.run_once(T0 + 500) == 0  # backing off (1 s)
        assert await notifier.run_once(T0 + 1_000) == 1  # fails again: the next channel
        assert await notifier.run_once(T0 + 1_000) == 1
        assert notifier.queue.attempts() == [
            ("a1", "ch1", 1, "failed"),
            ("a1", "ch1", 2, "failed"),
            ("a1", "ch2", 1, "sent"),
        ]
    assert len(hook.requests) == 1


async def test_an_acknowledgement_cancels_what_is_not_sent_yet(
    tmp_path: Path, store: EdgeStore, hook: WebhookReceiver
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/nobody"
    config = configure(tmp_path, closed, hook.apprise_url())
    async with LocalNotifier.opened(config) as notifier:
        store.apply(PutAlert(alert("a1")))
        assert await notifier.run_once(T0) == 1  # fails; retried after its back-off
        acknowledged = replace(alert("a1"), state=AlertState.ACKNOWLEDGED, acknowledged_at=T0)
        store.apply(PutAlert(acknowledged))
        assert await notifier.run_once(T0 + 10_000) == 0
    assert rows(config) == {("a1", "ch1"): "cancelled", ("a1", "ch2"): "standby"}
    assert hook.requests == []


async def test_a_send_interrupted_by_a_crash_is_unknown_and_the_next_channel_tells(
    tmp_path: Path, store: EdgeStore, hook: WebhookReceiver
) -> None:
    config = configure(tmp_path, hook.apprise_url("/first"), hook.apprise_url("/second"))
    async with LocalNotifier.opened(config) as notifier:
        store.apply(PutAlert(alert("a1")))
        # Claimed (attempt written) and never resolved: what a kill mid-send leaves.
        claimed, _ = notifier.queue.claim(T0, notifier.lease_ms)
        assert len(claimed) == 1
        assert await notifier.run_once(T0 + notifier.lease_ms - 1) == 0  # the lease holds
        assert await notifier.run_once(T0 + notifier.lease_ms + 1) == 1
        assert notifier.queue.attempts() == [("a1", "ch1", 1, "unknown"), ("a1", "ch2", 1, "sent")]
    assert [r.path for r in hook.requests] == ["/second"]


async def test_turning_it_on_queues_open_alerts_and_off_cancels_what_waits(
    tmp_path: Path, store: EdgeStore, hook: WebhookReceiver
) -> None:
    # Raised while [notify] was off (never turned on yet): the trigger did nothing.
    store.apply(PutAlert(alert("before")), PutAlert(alert("gas", AlertKind.GAS)))
    acked = replace(alert("handled"), state=AlertState.ACKNOWLEDGED, acknowledged_at=T0)
    store.apply(PutAlert(acked))
    config = configure(tmp_path, hook.apprise_url(), kinds=["breach"])
    async with LocalNotifier.opened(config) as notifier:
        assert await notifier.run_once(T0) == 1
    assert [r.key for r in hook.requests] == ["h1/before/raised/on-site/ch1"]

    # Later, with a back-off pending: turned off, what waited is cancelled for good.
    closed = f"json://127.0.0.1:{free_port()}/nobody"
    config = configure(tmp_path, closed, hook.apprise_url(), kinds=["breach"])
    async with LocalNotifier.opened(config) as notifier:
        store.apply(PutAlert(alert("later")))
        assert await notifier.run_once(T0) == 1
    async with LocalNotifier.running(configure(tmp_path)) as off:
        assert off is None
    store.apply(PutAlert(alert("while-off")))
    assert ("while-off", "ch1") not in rows(config)  # the trigger is off
    # On again: the alert raised meanwhile is open and never queued, so it is queued
    # now; what the switch-off cancelled stays cancelled.
    async with LocalNotifier.opened(config) as notifier:
        assert await notifier.run_once(T0 + 60_000) == 1
    assert {k: v for k, v in rows(config).items() if k[0] != "before"} == {
        ("later", "ch1"): "cancelled",
        ("later", "ch2"): "cancelled",
        ("while-off", "ch1"): "queued",  # failed once, retried after its back-off
        ("while-off", "ch2"): "standby",
    }
    assert len(hook.requests) == 1


async def test_a_row_whose_channel_left_the_config_is_cancelled(
    tmp_path: Path, store: EdgeStore, hook: WebhookReceiver
) -> None:
    closed = f"json://127.0.0.1:{free_port()}/nobody"
    config = configure(tmp_path, closed, hook.apprise_url(), attempts=1)
    async with LocalNotifier.opened(config) as notifier:
        store.apply(PutAlert(alert("a1")))
        assert await notifier.run_once(T0) == 1  # ch1 fails: ch2 is queued
    # Restarted with the webhook taken out of [notify]: ch2 is no channel any more.
    async with LocalNotifier.opened(configure(tmp_path, closed)) as notifier:
        assert await notifier.run_once(T0) == 0
    assert rows(config) == {("a1", "ch1"): "failed", ("a1", "ch2"): "cancelled"}
    assert hook.requests == []
