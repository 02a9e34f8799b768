"""The notification worker: claims due rows, sends them through Apprise, records every
attempt, and applies the schedule's decisions (bellhop_bridge.notify_core).

    async with Notifier(store, config).running():
        ...

A pass is three steps. (1) In one transaction: rows whose lease ran out are settled
as `unknown`; due rows are claimed (`sending`, a lease of the send's timeout plus a
margin, the attempt written as `sending`) - on PostgreSQL with `FOR UPDATE SKIP
LOCKED`, so two relay nodes never claim one row. (2) Each claimed row is sent, in a
thread of the worker's own, under a timeout. (3) In one transaction: each attempt's
outcome and the rows' next states, unless the row's lease was taken over meanwhile.

A relay that dies during (2) leaves the row `sending`: when its lease runs out, the
row is settled `unknown` and never sent on that channel again (at most once per
channel); the contact's next channel, if any, is tried instead, and escalation goes
on as scheduled. See docs/notifications.md, "Failures and crashes".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from bellhop_bridge import notify_channels as channels
from bellhop_bridge import notify_core
from bellhop_bridge.notify_core import Outcome, Policy, Retry, Row, RowState, Schedule, dedupe_key
from bellhop_bridge.notify_send import send_threads, send_within, stop_loop
from sqlalchemy.engine import Connection

from bellhop_cloud.config import RelayConfig, parse_networks
from bellhop_cloud.db.schema import alerts, notifications, notify_attempts
from bellhop_cloud.db.store import Store
from bellhop_cloud.metrics import RelayMetrics
from bellhop_cloud.notify.queue import policy_of

__all__ = ["Claimed", "Notifier", "message"]

log = logging.getLogger(__name__)

BATCH: Final = 50  # rows claimed per pass
STOP_GRACE_S: Final = 5.0  # beyond the send timeout, for a pass to finish on shutdown
# Counting the queue reads the (state, due) index: often enough for a gauge, no more.
DEPTH_EVERY_S: Final = 5.0
_N = notifications


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row claimed for one send."""

    row_id: int
    attempts: int
    key: str
    url: str
    title: str
    body: str


def message(alert: Any) -> tuple[str, str]:
    """The title and body of an alert's notification (the gateway's local channel says
    the same: `bellhop_bridge.notify_core.message`)."""
    return notify_core.message(alert)


class Notifier:
    """Owns the worker task and its send threads."""

    def __init__(
        self, store: Store, config: RelayConfig, metrics: RelayMetrics | None = None
    ) -> None:
        self.store = store
        self.config = config
        # The app passes the relay's; a worker of a test's own counts into its own.
        self.metrics = metrics or RelayMetrics()
        self._depth_at = 0.0
        self.schedule = Schedule(
            Retry(config.notify_retry_base_s, config.notify_retry_max_s, config.notify_attempts)
        )
        self.lease_ms = int((config.notify_send_timeout_s + config.notify_lease_margin_s) * 1000)
        self.reach = channels.Reach(parse_networks(config.notify_private_targets))
        self._threads: ThreadPoolExecutor | None = None
        self._stopping = asyncio.Event()

    @contextlib.asynccontextmanager
    async def threads(self) -> AsyncIterator[Notifier]:
        """The send threads, for `run_once` (`running` opens them itself)."""
        async with send_threads(self.config.notify_concurrency, "relay-notify") as threads:
            self._threads = threads
            try:
                yield self
            finally:
                self._threads = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Notifier]:
        async with self.threads():
            task = asyncio.create_task(self._loop(), name="notify-worker")
            try:
                yield self
            finally:
                wait_s = self.config.notify_send_timeout_s + STOP_GRACE_S
                await stop_loop(task, self._stopping, wait_s)

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                busy = await self.run_once()
            except Exception as exc:  # the database away: try again at the next poll
                log.error("notification pass failed: %s", type(exc).__name__)
                busy = 0
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.config.notify_poll_s)

    async def run_once(self, now: int | None = None) -> int:
        """One pass; returns how many rows it claimed. `now` (Unix ms; default the clock)
        is the time the pass acts at: a test moves it to reach the schedule's steps."""
        claimed, unknown = await self.store.run(
            _claim, now or now_ms(), self.lease_ms, self.schedule
        )
        # Counted once the transaction that settled them committed.
        self.metrics.notify_unknown.inc(unknown)
        if claimed:
            outcomes = await asyncio.gather(*(self._send(c) for c in claimed))
            results = list(zip(claimed, outcomes, strict=True))
            recorded = await self.store.run(_resolve, results, now or now_ms(), self.schedule)
            sent, failed = self.metrics.notify_sent, self.metrics.notify_failed
            for claim, outcome in recorded:
                (sent if outcome is Outcome.SENT else failed).labels(
                    channels.scheme_of(claim.url)
                ).inc()
        await self.count_queue(now or now_ms())
        return len(claimed)

    async def count_queue(self, now: int, *, force: bool = False) -> None:
        """The queue's depth across every node: due and not sent yet, sending, and
        queued for later (escalation steps, retries after their back-off)."""
        if not force and time.monotonic() - self._depth_at < DEPTH_EVERY_S:
            return
        self._depth_at = time.monotonic()
        due = sa.case((_N.c.due_ms <= now, "due"), else_="later")
        label = sa.case((_N.c.state == RowState.SENDING.value, "sending"), else_=due)
        query = (
            sa.select(label, sa.func.count())
            .where(_N.c.state.in_((RowState.QUEUED.value, RowState.SENDING.value)))
            .group_by(label)
        )
        async with self.store.read() as conn:
            counts: dict[str, int] = {s: n for s, n in await conn.execute(query)}
        for state in ("due", "later", "sending"):
            self.metrics.notify_queue.labels(state).set(counts.get(state, 0))

    async def _send(self, claimed: Claimed) -> str | None:
        """None if the channel accepted it, else why not."""
        if self._threads is None:
            raise RuntimeError("send threads are not open: use running() or threads()")
        return await send_within(
            self._threads,
            claimed.url,
            claimed.title,
            claimed.body,
            claimed.key,
            reach=self.reach,
            timeout_s=self.config.notify_send_timeout_s,
        )


def _locked(conn: Connection, query: sa.Select[Any]) -> sa.Select[Any]:
    """Rows another node is claiming are skipped, not waited for (PostgreSQL; SQLite
    has one writer at a time anyway)."""
    if conn.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, of=_N)
    return query


def _claim(
    conn: Connection, now: int, lease_ms: int, schedule: Schedule
) -> tuple[list[Claimed], int]:
    """The rows claimed, and how many sends were settled as `unknown`."""
    stale = conn.execute(
        _locked(
            conn,
            sa.select(_N).where(_N.c.state == RowState.SENDING.value, _N.c.lease_ms < now),
        )
    ).all()
    for row in stale:
        _settle(
            conn, row, Outcome.UNKNOWN, "the relay stopped during the send", now, schedule=schedule
        )
    due = conn.execute(
        _locked(
            conn,
            sa.select(_N, alerts.c.state.label("alert_state"))
            .select_from(
                _N.outerjoin(
                    alerts,
                    sa.and_(alerts.c.hotel_id == _N.c.hotel_id, alerts.c.alert_id == _N.c.alert_id),
                )
            )
            .where(_N.c.state == RowState.QUEUED.value, _N.c.due_ms <= now)
            .order_by(_N.c.due_ms)
            .limit(BATCH),
        )
    ).all()
    policies: dict[str, Policy] = {}
    claimed: list[Claimed] = []
    for row in due:
        if row.hotel_id not in policies:
            policies[row.hotel_id] = policy_of(conn, row.hotel_id)
        channel = policies[row.hotel_id].channel(row.contact_id, row.channel_id)
        if schedule.due(row.alert_state, channel) is RowState.CANCELLED or channel is None:
            conn.execute(_N.update().where(_N.c.id == row.id).values(state="cancelled"))
            continue
        attempts = row.attempts + 1
        conn.execute(
            _N.update()
            .where(_N.c.id == row.id)
            .values(state=RowState.SENDING.value, lease_ms=now + lease_ms, attempts=attempts)
        )
        conn.execute(
            notify_attempts.insert().values(
                notification_id=row.id,
                hotel_id=row.hotel_id,
                number=attempts,
                started_ms=now,
                outcome=RowState.SENDING.value,
            )
        )
        alert = conn.execute(
            sa.select(alerts).where(
                alerts.c.hotel_id == row.hotel_id, alerts.c.alert_id == row.alert_id
            )
        ).one()
        title, body = message(alert)
        key = dedupe_key(row.hotel_id, row.alert_id, row.transition, row.contact_id, row.channel_id)
        claimed.append(Claimed(row.id, attempts, key, channel.url, title, body))
    return claimed, len(stale)


def _resolve(
    conn: Connection, results: list[tuple[Claimed, str | None]], now: int, schedule: Schedule
) -> list[tuple[Claimed, Outcome]]:
    """Each send's outcome recorded; returns those that were (not settled meanwhile)."""
    recorded: list[tuple[Claimed, Outcome]] = []
    for claimed, error in results:
        row = conn.execute(
            sa.select(_N).where(
                _N.c.id == claimed.row_id,
                _N.c.state == RowState.SENDING.value,
                _N.c.attempts == claimed.attempts,
            )
        ).first()
        if row is None:  # its lease ran out and another pass settled it
            log.warning("notification %d was settled while it was being sent", claimed.row_id)
            continue
        outcome = Outcome.SENT if error is None else Outcome.FAILED
        _settle(conn, row, outcome, error, now, schedule=schedule)
        recorded.append((claimed, outcome))
    return recorded


def _settle(
    conn: Connection, row: Any, outcome: Outcome, error: str | None, now: int, *, schedule: Schedule
) -> None:
    """Record the attempt's outcome and apply the schedule's changes."""
    conn.execute(
        notify_attempts.update()
        .where(
            notify_attempts.c.notification_id == row.id,
            notify_attempts.c.number == row.attempts,
            notify_attempts.c.outcome == RowState.SENDING.value,
        )
        .values(outcome=outcome.value, finished_ms=now, error=error)
    )
    siblings = [
        Row(s.id, s.contact_id, s.position, RowState(s.state), s.attempts)
        for s in conn.execute(
            sa.select(_N.c.id, _N.c.contact_id, _N.c.position, _N.c.state, _N.c.attempts).where(
                _N.c.hotel_id == row.hotel_id,
                _N.c.alert_id == row.alert_id,
                _N.c.transition == row.transition,
                _N.c.contact_id == row.contact_id,
            )
        )
    ]
    this = Row(row.id, row.contact_id, row.position, RowState.SENDING, row.attempts)
    for change in schedule.outcome(this, siblings, outcome, now):
        values: dict[str, Any] = {"state": change.state.value, "lease_ms": None}
        if change.due_ms is not None:
            values["due_ms"] = change.due_ms
        conn.execute(_N.update().where(_N.c.id == change.row_id).values(**values))
