"""The gateway: wires the cores to the I/O and owns every background task.

    async with Gateway(config) as gateway:
        await gateway.wait_closed()

A telemetry message, end to end: `mqtt.link` hands it to `_on_message`;
`core.delivery` admits it (or holds it while the writer is behind);
`core.ingest` decodes and applies it and returns write ops and live events;
the ops go to `store.writer`, the events to the `bus`; when the writer
reports the batch committed, `core.delivery` says which QoS 1 messages may
be acknowledged and `mqtt.link` sends their PUBACKs. Nothing here decides
anything the cores can decide; this module only carries out what they say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Coroutine, Iterable, Iterator
from types import TracebackType
from typing import Any, Final

import aiomqtt
import grpc
from bellhop_bridge.desired import RemoteIntent
from bellhop_devices import codec

from bellhop_edge.api import start_server
from bellhop_edge.auth import authenticator
from bellhop_edge.bridge.client import bridge_for
from bellhop_edge.bus import EventBus
from bellhop_edge.clock import now_ms
from bellhop_edge.commands import CommandService, run_fleet
from bellhop_edge.config import EdgeConfig
from bellhop_edge.core.alerts import AlertBook
from bellhop_edge.core.commands import CommandBook, CommandRecord, CommandRequest
from bellhop_edge.core.delivery import Acknowledge, Action, Admission, Delivery, Reconnect
from bellhop_edge.core.hotel import Hotel
from bellhop_edge.core.ingest import Effects, Ingest
from bellhop_edge.core.model import (
    Alert,
    AlertState,
    DesiredState,
    GatewayStatus,
    LiveEvent,
    Room,
    TelemetryPoint,
)
from bellhop_edge.core.ops import PutCommand, PutDesired, PutLastSeen
from bellhop_edge.core.replay import ReplayMemory
from bellhop_edge.core.rules import RuleEngine
from bellhop_edge.errors import EdgeError, InvalidRequest
from bellhop_edge.metrics import EdgeMetrics, MetricsServer
from bellhop_edge.mqtt import MqttLink
from bellhop_edge.store import EdgeStore, StoreWriter, Synchronous, WriterReport

__all__ = ["Gateway"]

log = logging.getLogger(__name__)

# Held messages handled per event-loop turn when the writer has caught up.
DRAIN_SLICE: Final = 256
LAST_SEEN_FLUSH_S: Final = 5.0
# A clean stop: LAN calls in progress may finish; the broker link closes.
SERVER_GRACE_S: Final = 1.0
LINK_STOP_S: Final = 5.0
REGISTRY_POLL_S: Final = 2.0


class Gateway:
    """One hotel's gateway; an async context manager that owns its tasks."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.bus = EventBus()
        self.started_at = now_ms()
        self.api_port: int | None = None
        self.metrics = EdgeMetrics(self)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._draining = False
        self._stopping = False
        self._link_task: asyncio.Task[None] | None = None
        self._server: grpc.aio.Server | None = None
        self.delivery: Delivery[aiomqtt.Message] = Delivery(
            max_pending=config.store.max_pending_ops
        )

    # -- lifecycle ------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        try:
            return await self._start()
        except BaseException:
            await self.close()  # release whatever was opened before the failure
            raise

    async def _start(self) -> Gateway:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = EdgeStore.open(
            config.database_path, synchronous=Synchronous(config.store.synchronous)
        )
        for room in config.rooms:
            self.store.upsert_room(Room(room.room_id, room.name or room.room_id, room.floor))
        self.hotel = Hotel(
            config.hotel_id,
            heartbeat_timeout_ms=int(config.liveness.heartbeat_timeout_s * 1000),
            rooms=self.store.list_rooms(),
            devices=self.store.list_devices(include_unknown=True),
            reported=self.store.load_reported().values(),
            desired=self.store.load_desired().values(),
        )
        replay = ReplayMemory(tail=config.store.replay_receipts)
        replay.restore(self.store.receipts(config.store.replay_receipts))
        for entry in config.devices:
            device = self.hotel.register_device(entry.device_id, entry.room_id, entry.kind)
            self.store.upsert_device(device)
        alerts = AlertBook.from_open(self.store.open_alerts())
        self.ingest = Ingest(
            self.hotel,
            RuleEngine(config.rules, raised=alerts.conditions()),
            alerts,
            replay,
            max_payload_bytes=config.mqtt.max_payload_bytes,
        )
        self.writer = StoreWriter(
            config.database_path,
            synchronous=Synchronous(config.store.synchronous),
            max_batch=config.store.batch_max_ops,
            max_delay_ms=config.store.batch_max_delay_ms,
            max_pending=config.store.max_pending_ops,
            max_size_bytes=(
                None if config.store.max_size_mib is None else config.store.max_size_mib << 20
            ),
            receipts_kept=config.store.replay_receipts,
        )
        self.writer.add_listener(self._on_writer_report)
        self.hotel.keep_desired = lambda state: self.writer.submit(PutDesired(state))
        await self.writer.start()
        self.commands = CommandService(
            hotel_id=config.hotel_id,
            book=CommandBook(max_in_flight=config.commands.max_in_flight),
            publish=self._publish,
            load=self.store.get_command,
            persist=lambda record: self.writer.submit(PutCommand(record)),
            notify=self._command_finished,
        )
        self.link = MqttLink(
            config.mqtt,
            # The broker ties client ids to usernames (broker_files); use it here too.
            client_id=(
                config.mqtt.client_id
                or config.mqtt.username
                or f"bellhop-gateway-{config.hotel_id}"
            ),
            subscriptions=codec.subscriptions(config.hotel_id),
            on_message=self._on_message,
            on_connection=self.delivery.connected,
        )
        self._server, self.api_port = await start_server(self, config.api, authenticator(config))
        if config.metrics.enabled:
            served = await MetricsServer.start(self.metrics, config.metrics)
            self._spawn(served.serve(), "metrics")
        self.bridge = bridge_for(
            config,
            store=self.store,
            writer=self.writer,
            hotel=self.hotel,
            alerts=alerts,
            control=self,
        )
        if self.bridge is not None:
            self._spawn(self.bridge.run(), "bridge")
        self._link_task = self._spawn(self.link.run(), "mqtt")
        self._spawn(self._liveness_loop(), "liveness")
        self._spawn(self._retention_loop(), "retention")
        self._spawn(self._last_seen_loop(), "last-seen")
        self._spawn(self._registry_loop(), "registry")
        log.info(
            "gateway for hotel %s up: %d rooms, %d devices, LAN API on port %d",
            config.hotel_id,
            len(self.hotel.rooms),
            self.hotel.registered_count,
            self.api_port,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop cleanly: refuse new work, commit what was accepted, acknowledge it, disconnect.

        Messages that arrive meanwhile (or were held back) are not
        acknowledged: the broker keeps them for the next start.
        """
        if self._closed.is_set():
            return
        self._closed.set()
        self._stopping = True
        if self._server is not None:
            await self._server.stop(grace=SERVER_GRACE_S)
        if hasattr(self, "commands"):
            self.commands.cancel_all()
        others = [t for t in self._tasks if t is not self._link_task]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        if hasattr(self, "writer"):
            self._flush_last_seen()
            # Committed now; the writer's report queues the PUBACKs on the link.
            with contextlib.suppress(EdgeError):
                await self.writer.flush()
        if self._link_task is not None:
            if self.link.stop():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._link_task), LINK_STOP_S)
            self._link_task.cancel()
            # Bounded: a stop must finish within the service manager's timeout.
            _, stuck = await asyncio.wait([self._link_task], timeout=LINK_STOP_S)
            if stuck:
                log.error("the broker link did not stop within %.0f s; leaving it", LINK_STOP_S)
        if hasattr(self, "writer"):
            await self.writer.close()
        if hasattr(self, "store"):
            self.store.close()
        log.info("gateway for hotel %s stopped", self.config.hotel_id)

    def request_stop(self) -> None:
        """Ask `run` to stop (SIGTERM, SIGINT): the same clean stop as leaving the context."""
        self._stop_requested.set()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def wait_stop_requested(self) -> None:
        await self._stop_requested.wait()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"gateway-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    # -- ingest ---------------------------------------------------------------------
    def _on_message(self, message: aiomqtt.Message) -> None:
        """Every message from the broker, as paho reads it (see mqtt/_compat.py)."""
        if self._stopping:
            return  # not acknowledged: the broker sends it again after the restart
        admission = self.delivery.admit(message, message.qos, self.writer.pending)
        if admission is Admission.HANDLE:
            self._handle(message)
        elif admission is Admission.HOLD:
            if not self._draining:
                self._draining = True
                self._spawn(self._drain(), "backlog")
        else:
            self._carry_out(self.ingest.overloaded(message.topic.value))

    async def _drain(self) -> None:
        """Hand held messages back to ingest as the writer catches up."""
        delivery, writer = self.delivery, self.writer
        try:
            while delivery.holding:
                await writer.wait_below(delivery.low_water)
                handled = 0
                while (message := delivery.release(writer.pending)) is not None:
                    self._handle(message)
                    handled += 1
                    if handled % DRAIN_SLICE == 0:
                        # Thousands may be waiting: let timers, the hand-over
                        # to the writer and LAN calls run in between.
                        await asyncio.sleep(0)
        finally:
            self._draining = False

    def _handle(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        first = self.writer.last_ticket + 1
        effects = self.ingest.receive(
            message.topic.value, bytes(payload), message.qos, now_ms(), live=self.bus.active
        )
        self._carry_out(effects)
        if message.qos:
            last = self.writer.last_ticket
            self._act(self.delivery.handled(message, message.qos, first, last))

    def _carry_out(self, effects: Effects) -> None:
        submit = self.writer.submit
        for op in effects.ops:
            submit(op)
        for event in effects.live:
            self.bus.publish(event)
        for alert in effects.alerts:
            log.warning(
                "alert %s %s on %s: %s",
                alert.kind.value,
                alert.state.value,
                alert.device_id,
                alert.message,
            )
        for device in effects.connectivity:
            log.info("device %s is %s", device.device_id, device.connectivity.value)
        for rejected in effects.rejects:
            log.warning(
                "rejected message from %s: %s (%s); counted, logged once",
                rejected.device_id,
                rejected.reason,
                rejected.detail,
            )
        if effects.acks:
            # Taken out first: reporting an unmatched ack reuses `effects`.
            acks, on_ack = list(effects.acks), self.commands.on_ack
            unmatched = [a for a in acks if not on_ack(a.device_id, a.ack)]
            for a in unmatched:
                self._carry_out(self.ingest.unmatched_ack(a.device_id, a.ack.id))

    def _on_writer_report(self, report: WriterReport) -> None:
        if report.died:
            self._act(self.delivery.writer_died())
        else:
            self._act(self.delivery.finished(report.through, report.failed))

    def _act(self, actions: Iterable[Action[aiomqtt.Message]]) -> None:
        for action in actions:
            if isinstance(action, Acknowledge):
                self.link.ack(action.message)
            elif isinstance(action, Reconnect):
                if self.link.drop(action.delay_s):
                    log.error(
                        "a message could not be stored (%s); reconnecting to the broker"
                        " in %.1f s so that it sends it again",
                        self.writer.stats.last_error,
                        action.delay_s,
                    )
            else:
                self._forget(action.message)

    def _forget(self, message: aiomqtt.Message) -> None:
        """Its writes failed: the broker sends it again, and then it must be stored."""
        payload = message.payload
        if isinstance(payload, bytes | bytearray):
            with contextlib.suppress(EdgeError, ValueError):
                self.ingest.forget(
                    codec.decode(message.topic.value, bytes(payload), hotel_id=self.hotel.hotel_id)
                )

    # -- background loops ---------------------------------------------------------
    async def _liveness_loop(self) -> None:
        interval = self.config.liveness.check_interval_s
        broker_was_up = True
        while True:
            await asyncio.sleep(interval)
            now = now_ms()
            with self._surviving("liveness check"):
                if not self.link.connected.is_set():
                    # Without the broker, silence says nothing about the devices.
                    broker_was_up = False
                    continue
                if not broker_was_up:
                    # Devices get a fresh heartbeat window after a broker outage.
                    self.hotel.restart_heartbeats(now)
                    broker_was_up = True
                self._carry_out(self.ingest.tick(now))

    async def _retention_loop(self) -> None:
        retention = self.config.retention
        while True:
            with self._surviving("retention"):
                await self.writer.apply_retention(retention, now_ms())
            await asyncio.sleep(retention.run_every_s)

    async def _registry_loop(self) -> None:
        """Pick up rooms and devices changed by `bellhop devices` beside us."""
        version = self.store.registry_version()
        while True:
            await asyncio.sleep(REGISTRY_POLL_S)
            with self._surviving("registry reload"):
                current = self.store.registry_version()
                if current == version:
                    continue
                gone = self.ingest.reload_registry(
                    self.store.list_rooms(), self.store.list_devices(include_unknown=True)
                )
                version = current
                log.info(
                    "registry reloaded: %d rooms, %d devices (%d removed)",
                    len(self.hotel.rooms),
                    self.hotel.registered_count,
                    len(gone),
                )

    async def _last_seen_loop(self) -> None:
        while True:
            await asyncio.sleep(LAST_SEEN_FLUSH_S)
            with self._surviving("last-seen flush"):
                self._flush_last_seen()

    @contextlib.contextmanager
    def _surviving(self, what: str) -> Iterator[None]:
        """One failed round of a background loop is logged; the loop goes on."""
        try:
            yield
        except (EdgeError, sqlite3.Error) as exc:
            log.error("%s failed, retrying next round: %s", what, exc)

    def _flush_last_seen(self) -> None:
        seen = dict(self.hotel.last_seen)
        if seen:
            self.writer.submit(PutLastSeen(seen))

    # -- operations used by the APIs (api.servicer.LanBackend) ----------------------
    async def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        await self.link.publish(topic, payload, qos)

    def _command_finished(self, record: CommandRecord) -> None:
        self.metrics.command_finished(record)
        device = self.hotel.devices.get(record.request.device_id)
        self.bus.publish(LiveEvent(record.result, device.room_id if device else None))

    async def send_command(self, request: CommandRequest, *, timeout: float) -> CommandRecord:
        self.hotel.registered(request.device_id)
        return await self.commands.execute(request, timeout=timeout)

    async def send_fleet(
        self, requests: list[CommandRequest], *, timeout: float, max_in_flight: int
    ) -> list[CommandRecord]:
        return await run_fleet(
            self.commands, requests, timeout=timeout, max_in_flight=max_in_flight
        )

    def set_desired(
        self, device_id: str, values: dict[str, Any], *, by: str, **options: Any
    ) -> DesiredState:
        """`options`: expected_version; safety=True (and safety_until, ms) for an override."""
        if not values:
            raise InvalidRequest("values must not be empty")
        return self.hotel.set_desired(device_id, values, by=by, now=now_ms(), **options)

    def merge_desired(self, device_id: str, remote: RemoteIntent, change_id: str) -> DesiredState:
        # Written (Hotel.keep_desired) unless it is a change merged already.
        return self.hotel.merge_desired(device_id, remote, change_id=change_id, now=now_ms())

    def list_alerts(self, states: list[AlertState], room_id: str | None, limit: int) -> list[Alert]:
        return self.store.list_alerts(states=states or None, room_id=room_id, limit=limit)

    def acknowledge_alert(
        self, alert_id: str, *, by: str, note: str, at: int | None = None
    ) -> Alert:
        """`at`: when it was acknowledged, if not now (through the cloud: the relay's time)."""
        now = now_ms() if at is None else at
        effects = self.ingest.acknowledge_alert(alert_id, by=by, note=note, now=now)
        (alert,) = effects.alerts
        self._carry_out(effects)
        return alert

    async def query_telemetry(
        self, device_id: str, metric: str, start: int, end: int, limit: int
    ) -> list[TelemetryPoint]:
        self.hotel.device(device_id)
        await self.writer.flush()
        return await asyncio.to_thread(
            self.store.query_telemetry, device_id, metric, start, end, limit
        )

    def _no_bridge(self) -> str:
        return "not enrolled" if self.config.bridge.enabled else "off"

    def status(self) -> GatewayStatus:
        hotel, bridge = self.hotel, self.bridge
        return GatewayStatus(
            hotel_id=hotel.hotel_id,
            broker_connected=self.link.connected.is_set(),
            devices_online=hotel.online,
            devices_total=hotel.registered_count,
            rejected=dict(hotel.rejected),
            accepted=hotel.accepted,
            started_at=self.started_at,
            **(bridge.summary() if bridge else {"cloud_bridge": self._no_bridge()}),
        )
