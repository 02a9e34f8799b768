"""The gateway's local notification channel: alerts told to staff through an SMTP relay
or a webhook on the hotel's LAN, with the internet down as well as up.

    async with LocalNotifier.running(config) as notifier:   # None when `[notify]` is off
        ...

Fed by the store, not by the event bus: while `[notify]` is on, a trigger (schema v8)
records each alert inserted as raised in `notify_inbox`, in the writer's transaction
that commits the alert. An alert that is committed is therefore queued, whatever
dies next; a subscriber to the bus would lose the alerts published but not yet
queued when the process died. The decisions are the relay's (`bellhop_bridge.
notify_core`): one contact, "on-site", whose channels are `[notify] channels` in
order (a later one only when the ones before it failed), retries with back-off.

A pass, like the relay's worker (bellhop_cloud/notify/worker.py): (1) one
transaction turns new inbox rows into a row per channel, settles as `unknown` the
sends whose lease ran out, and claims the due rows (`sending` under a lease, the
attempt written as `sending`); it commits with `synchronous = FULL` before anything
is sent. (2) Each claimed row is sent in a thread of the notifier's own, under
`send_timeout_s`. (3) One transaction writes each outcome and the rows' next states.
A gateway killed during (2) leaves the row `sending`: once its lease ran out it is
settled `unknown` and never sent on that channel again (at most once per channel),
and the next channel is tried instead. See docs/notifications.md, "On site".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from bellhop_bridge import notify_channels as channels
from bellhop_bridge.notify_core import (
    PENDING,
    RAISED,
    Channel,
    Contact,
    Outcome,
    Policy,
    Retry,
    Row,
    RowState,
    Schedule,
    Slot,
    dedupe_key,
    message,
)
from bellhop_bridge.notify_send import send_threads, send_within, stop_loop

from bellhop_edge.config import EdgeConfig, NotifyConfig
from bellhop_edge.store.schema import Synchronous, connect, transaction

__all__ = ["CONTACT", "Claimed", "LocalNotifier", "policy_of"]

log = logging.getLogger(__name__)

CONTACT: Final = "on-site"  # the one contact: whoever reads the hotel's LAN channels
BATCH: Final = 50  # rows claimed per pass
CONCURRENCY: Final = 4  # sends at once
# Beyond the send's timeout: the lease only matters to the next run after a crash.
LEASE_MARGIN_S: Final = 2.0
# A clean stop waits this long for a pass under way; a send still running then is
# left `sending` and settled as `unknown` at the next start (never sent twice).
STOP_WAIT_S: Final = 5.0
PRUNE_EVERY_S: Final = 3600.0
CACHE_KIB: Final = 1024
_FINAL: Final = tuple(s.value for s in RowState if s.final)


def now_ms() -> int:
    return int(time.time() * 1000)


def policy_of(notify: NotifyConfig) -> Policy:
    """`[notify]` as the shared schedule's policy. Channels are known by their place in
    the list (`ch1`, `ch2`, ...): no secret is stored with a row, and a row left for a
    channel that is no longer listed is cancelled when it comes due."""
    channels_ = tuple(
        Channel(f"ch{n}", url.get_secret_value()) for n, url in enumerate(notify.channels, 1)
    )
    contact = Contact(
        CONTACT, "On site", frozenset(notify.kinds), frozenset(notify.severities), 0, channels_
    )
    return Policy((contact,))


@dataclass(frozen=True, slots=True)
class _Alert:
    """A stored alert, as the shared message text reads it."""

    hotel_id: str
    alert_id: str
    kind: str
    severity: str
    device_id: str
    room_id: str | None
    message: str | None
    raised_at: int


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row claimed for one send."""

    row_id: int
    attempts: int
    channel_id: str
    key: str
    url: str
    title: str
    body: str


def _slot_values(s: Slot) -> tuple[str, str, str, str, int, int, str, int]:
    return (
        s.alert_id,
        s.transition,
        s.contact_id,
        s.channel_id,
        s.step,
        s.position,
        s.state.value,
        s.due_ms,
    )


class _Queue:
    """The queue's tables, through the notifier's own connection; every method runs
    in a thread, one at a time (a lock)."""

    def __init__(self, config: EdgeConfig, schedule: Schedule, policy: Policy) -> None:
        # FULL: a claim (the attempt written before the send) survives a power cut too.
        self._conn = connect(config.database_path, Synchronous.FULL, cache_kib=CACHE_KIB)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self._hotel_id = config.hotel_id
        self._schedule = schedule
        self._policy = policy

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def switch_on(self) -> int:
        """Turn the trigger on. When it was off, the alerts open and unacknowledged now
        that were never queued are queued too: the gateway starts taking alerts before
        this runs, and what was raised while it was off still wants telling. Returns
        how many."""
        with self._lock, transaction(self._conn):
            (enabled,) = self._conn.execute("SELECT enabled FROM notify_state").fetchone()
            if enabled:
                return 0
            self._conn.execute("UPDATE notify_state SET enabled = 1 WHERE id = 1")
            return int(
                self._conn.execute(
                    "INSERT OR IGNORE INTO notify_inbox (alert_id, transition, queued, created_ms)"
                    " SELECT alert_id, state, 0, raised_at FROM alerts WHERE state = ?",
                    (RAISED,),
                ).rowcount
            )

    def claim(self, now: int, lease_ms: int) -> tuple[list[Claimed], int]:
        """Queue what the trigger recorded, settle interrupted sends, claim due rows;
        returns the rows claimed and how many sends were settled as `unknown`."""
        with self._lock, transaction(self._conn):
            self._queue_new(now)
            conn = self._conn
            stale = conn.execute(
                "SELECT * FROM notifications WHERE state = ? AND lease_ms < ?",
                (RowState.SENDING.value, now),
            ).fetchall()
            for row in stale:
                log.warning(
                    "a notification of alert %s on %s was interrupted by a stop: not sent again"
                    " on that channel",
                    row["alert_id"],
                    row["channel_id"],
                )
                self._settle(row, Outcome.UNKNOWN, "the gateway stopped during the send", now)
            due = conn.execute(
                "SELECT n.*, a.state AS alert_state FROM notifications n"
                " LEFT JOIN alerts a ON a.alert_id = n.alert_id"
                " WHERE n.state = ? AND n.due_ms <= ? ORDER BY n.due_ms LIMIT ?",
                (RowState.QUEUED.value, now, BATCH),
            ).fetchall()
            claimed = [c for row in due if (c := self._claim_one(row, now, lease_ms)) is not None]
        return claimed, len(stale)

    def _queue_new(self, now: int) -> None:
        new = self._conn.execute(
            "SELECT i.alert_id, i.transition, a.kind, a.severity FROM notify_inbox i"
            " LEFT JOIN alerts a ON a.alert_id = i.alert_id WHERE NOT i.queued LIMIT ?",
            (BATCH,),
        ).fetchall()
        for alert_id, transition, kind, severity in new:
            if transition == RAISED and kind is not None:
                slots = self._schedule.raised(alert_id, kind, severity, self._policy, now)
                self._conn.executemany(
                    "INSERT OR IGNORE INTO notifications (alert_id, transition, contact_id,"
                    " channel_id, step, position, state, due_ms, attempts, created_ms)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                    [(*_slot_values(s), now) for s in slots],
                )
            self._conn.execute(
                "UPDATE notify_inbox SET queued = 1 WHERE alert_id = ? AND transition = ?",
                (alert_id, transition),
            )

    def _claim_one(self, row: sqlite3.Row, now: int, lease_ms: int) -> Claimed | None:
        conn = self._conn
        channel = self._policy.channel(row["contact_id"], row["channel_id"])
        if self._schedule.due(row["alert_state"], channel) is RowState.CANCELLED or not channel:
            # Acknowledged or cleared first, or the channel left `[notify]`.
            conn.execute(
                "UPDATE notifications SET state = ? WHERE id = ?",
                (RowState.CANCELLED.value, row["id"]),
            )
            return None
        attempts = row["attempts"] + 1
        conn.execute(
            "UPDATE notifications SET state = ?, lease_ms = ?, attempts = ? WHERE id = ?",
            (RowState.SENDING.value, now + lease_ms, attempts, row["id"]),
        )
        conn.execute(
            "INSERT INTO notify_attempts (notification_id, number, started_ms, outcome)"
            " VALUES (?, ?, ?, ?)",
            (row["id"], attempts, now, RowState.SENDING.value),
        )
        alert = conn.execute(
            "SELECT alert_id, kind, severity, device_id, room_id, message, raised_at"
            " FROM alerts WHERE alert_id = ?",
            (row["alert_id"],),
        ).fetchone()
        title, body = message(_Alert(self._hotel_id, *alert))
        key = dedupe_key(
            self._hotel_id,
            row["alert_id"],
            row["transition"],
            row["contact_id"],
            channel.channel_id,
        )
        return Claimed(row["id"], attempts, channel.channel_id, key, channel.url, title, body)

    def resolve(
        self, results: Iterable[tuple[Claimed, str | None]], now: int
    ) -> list[tuple[Claimed, Outcome]]:
        """Each send's outcome and what follows; returns those recorded."""
        recorded: list[tuple[Claimed, Outcome]] = []
        with self._lock, transaction(self._conn):
            for claimed, error in results:
                row = self._conn.execute(
                    "SELECT * FROM notifications WHERE id = ? AND state = ? AND attempts = ?",
                    (claimed.row_id, RowState.SENDING.value, claimed.attempts),
                ).fetchone()
                if row is None:  # settled meanwhile: another gateway on this data dir?
                    log.warning("notification %d was settled while it was sent", claimed.row_id)
                    continue
                outcome = Outcome.SENT if error is None else Outcome.FAILED
                self._settle(row, outcome, error, now)
                recorded.append((claimed, outcome))
        return recorded

    def _settle(self, row: sqlite3.Row, outcome: Outcome, error: str | None, now: int) -> None:
        """Record the attempt's outcome and apply the schedule's changes."""
        conn = self._conn
        conn.execute(
            "UPDATE notify_attempts SET outcome = ?, finished_ms = ?, error = ?"
            " WHERE notification_id = ? AND number = ? AND outcome = ?",
            (outcome.value, now, error, row["id"], row["attempts"], RowState.SENDING.value),
        )
        siblings = [
            Row(s["id"], s["contact_id"], s["position"], RowState(s["state"]), s["attempts"])
            for s in conn.execute(
                "SELECT id, contact_id, position, state, attempts FROM notifications"
                " WHERE alert_id = ? AND transition = ? AND contact_id = ?",
                (row["alert_id"], row["transition"], row["contact_id"]),
            )
        ]
        this = Row(row["id"], row["contact_id"], row["position"], RowState.SENDING, row["attempts"])
        for change in self._schedule.outcome(this, siblings, outcome, now):
            conn.execute(
                "UPDATE notifications SET state = ?, lease_ms = NULL,"
                " due_ms = coalesce(?, due_ms) WHERE id = ?",
                (change.state.value, change.due_ms, change.row_id),
            )

    def prune(self) -> int:
        """Forget finished rows whose alert retention deleted; returns how many."""
        gone = "alert_id NOT IN (SELECT alert_id FROM alerts)"
        with self._lock, transaction(self._conn):
            self._conn.execute(
                "DELETE FROM notify_attempts WHERE notification_id IN"  # noqa: S608 - constants
                f" (SELECT id FROM notifications WHERE {gone}"
                f" AND state IN ({', '.join('?' * len(_FINAL))}))",
                _FINAL,
            )
            deleted = self._conn.execute(
                f"DELETE FROM notifications WHERE {gone}"  # noqa: S608 - constants
                f" AND state IN ({', '.join('?' * len(_FINAL))})",
                _FINAL,
            ).rowcount
            self._conn.execute(f"DELETE FROM notify_inbox WHERE queued AND {gone}")  # noqa: S608
        return int(deleted)

    def attempts(self) -> list[tuple[str, str, int, str]]:
        """Every attempt, oldest first: (alert, channel, number, outcome)."""
        with self._lock:
            return [
                tuple(r)
                for r in self._conn.execute(
                    "SELECT n.alert_id, n.channel_id, t.number, t.outcome FROM notify_attempts t"
                    " JOIN notifications n ON n.id = t.notification_id"
                    " ORDER BY t.started_ms, n.position, t.number"
                )
            ]


class LocalNotifier:
    """Owns the notifier's task, its send threads and its connection."""

    def __init__(self, config: EdgeConfig) -> None:
        notify = config.notify
        self.config = notify
        self.schedule = Schedule(Retry(notify.retry_base_s, notify.retry_max_s, notify.attempts))
        self.policy = policy_of(notify)
        self.lease_ms = int((notify.send_timeout_s + LEASE_MARGIN_S) * 1000)
        self.queue = _Queue(config, self.schedule, self.policy)
        self._threads: ThreadPoolExecutor | None = None
        self._stopping = asyncio.Event()
        self._pruned_at = 0.0

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, config: EdgeConfig) -> AsyncIterator[LocalNotifier | None]:
        """Run the notifier while the block runs, if `[notify]` lists channels."""
        if not config.notify.enabled:
            await asyncio.to_thread(_switch_off, config)
            yield None
            return
        async with cls.opened(config) as notifier:
            task = asyncio.create_task(notifier._loop(), name="notify")
            try:
                yield notifier
            finally:
                await stop_loop(task, notifier._stopping, STOP_WAIT_S)

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, config: EdgeConfig) -> AsyncIterator[LocalNotifier]:
        """The notifier switched on, with its connection and send threads but no loop
        (`running` adds it; a test drives `run_once` itself)."""
        notifier = await asyncio.to_thread(cls, config)
        try:
            if missed := await asyncio.to_thread(notifier.queue.switch_on):
                log.info("local notifications turned on: %d open alerts queued", missed)
            async with send_threads(CONCURRENCY, "notify") as notifier._threads:
                log.info(
                    "local notifications on: %s",
                    ", ".join(channels.masked(c.url) for c in notifier.policy.contacts[0].channels),
                )
                yield notifier
        finally:
            await asyncio.to_thread(notifier.queue.close)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.run_once()
                if time.monotonic() - self._pruned_at > PRUNE_EVERY_S:
                    self._pruned_at = time.monotonic()
                    await asyncio.to_thread(self.queue.prune)
            except sqlite3.Error as exc:  # busy or full: try again at the next poll
                log.error("notification pass failed: %s", exc)
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.config.poll_s)

    async def run_once(self, now: int | None = None) -> int:
        """One pass; returns how many rows it claimed."""
        claimed, _ = await asyncio.to_thread(self.queue.claim, now or now_ms(), self.lease_ms)
        if not claimed:
            return 0
        errors = await asyncio.gather(*(self._send(c) for c in claimed))
        results = list(zip(claimed, errors, strict=True))
        for claim, outcome in await asyncio.to_thread(self.queue.resolve, results, now or now_ms()):
            log.log(
                logging.INFO if outcome is Outcome.SENT else logging.WARNING,
                "notification %d (attempt %d) through %s (%s): %s",
                claim.row_id,
                claim.attempts,
                claim.channel_id,
                channels.scheme_of(claim.url),
                outcome.value,
            )
        return len(claimed)

    async def _send(self, claimed: Claimed) -> str | None:
        """None if the channel accepted it, else why not (a fixed text, no secret)."""
        assert self._threads is not None, "send threads are opened by opened()"
        return await send_within(
            self._threads,
            claimed.url,
            claimed.title,
            claimed.body,
            claimed.key,
            reach=channels.LAN,
            timeout_s=self.config.send_timeout_s,
        )


def _switch_off(config: EdgeConfig) -> None:
    """`[notify]` is off: stop the trigger and cancel what waited (a database too old
    or not there yet has nothing to switch off)."""
    if not config.database_path.exists():
        return
    conn = connect(config.database_path, Synchronous.NORMAL, cache_kib=CACHE_KIB)
    try:
        row = conn.execute("SELECT enabled FROM notify_state WHERE id = 1").fetchone()
        if row and row[0]:
            with transaction(conn):
                conn.execute("UPDATE notify_state SET enabled = 0 WHERE id = 1")
                _cancel_waiting(conn)
    except sqlite3.OperationalError:
        log.debug("no notification state to switch off", exc_info=True)
    finally:
        conn.close()


def _cancel_waiting(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE notify_inbox SET queued = 1 WHERE NOT queued")
    conn.execute(
        "UPDATE notifications SET state = ? WHERE state IN (?, ?)",
        (RowState.CANCELLED.value, *PENDING),
    )
