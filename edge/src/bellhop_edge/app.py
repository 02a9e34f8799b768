"""The gateway: wires the cores (hotel, rules, alerts, commands) to the I/O
(MQTT link, SQLite writer, gRPC server) and owns every background task.

    async with Gateway(config) as gateway:
        await gateway.wait_closed()

Ingest path, per MQTT message: decode (codec) -> apply (Hotel) -> rules ->
alerts -> submit to the single store writer -> acknowledge a QoS 1 message to
the broker once its batch is committed -> fan out to live watchers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiomqtt
import grpc
from bellhop.lan.v1 import lan_pb2
from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import DeviceMessage

from bellhop_edge import convert
from bellhop_edge import store as store_ops
from bellhop_edge.alerts import AlertBook
from bellhop_edge.auth import Authenticator, JwksVerifier, LocalTokens, Verifier
from bellhop_edge.bus import EventBus
from bellhop_edge.commands import (
    CommandBook,
    CommandRecord,
    CommandRequest,
    CommandService,
    now_ms,
    run_fleet,
)
from bellhop_edge.config import EdgeConfig
from bellhop_edge.errors import EdgeError, InvalidRequest
from bellhop_edge.hotel import (
    AckReceived,
    Change,
    ConnectivityChanged,
    DeviceUpdated,
    EventAccepted,
    Hotel,
    Rejected,
    StateChanged,
    TelemetryAccepted,
)
from bellhop_edge.model import Alert, AlertState, DesiredState, Room, TelemetryPoint
from bellhop_edge.mqtt import LinkState, MqttLink
from bellhop_edge.rules import ClearAlert, RaiseAlert, RuleEngine, RulesConfig
from bellhop_edge.store import EdgeStore, RetentionPolicy, StoreWriter, Synchronous

log = logging.getLogger(__name__)


BACKLOG_MAX = 100_000
# Held messages handled per event-loop turn when the writer has caught up.
DRAIN_SLICE = 256
# Reconnect delays while QoS 1 messages cannot be stored (see Gateway._settle).
STORE_RETRY_MIN_S = 1.0
STORE_RETRY_MAX_S = 60.0


@dataclass(frozen=True, slots=True)
class RejectLog:
    reason: str
    device_id: str


class Gateway:
    """One hotel's gateway; an async context manager that owns its tasks."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.bus = EventBus()
        self.started_at = now_ms()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._logged: set[RejectLog] = set()
        self._closed = asyncio.Event()
        self.api_port: int | None = None
        # Messages held back while the writer is congested (see _on_message).
        self._backlog: collections.deque[aiomqtt.Message] = collections.deque()
        self._draining = False
        self._store_failures = 0  # in a row, for the reconnect back-off
        self._server: grpc.aio.Server | None = None

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
            recent_telemetry_ts=self.store.recent_telemetry_ts(),
            recent_events=self.store.recent_events(),
        )
        for entry in config.devices:
            device = self.hotel.register_device(entry.device_id, entry.room_id, entry.kind)
            self.store.upsert_device(device)
        self.alerts = AlertBook.from_open(self.store.open_alerts())
        self.rules = RuleEngine(_rules_config(config), raised=self.alerts.conditions())
        self.writer = StoreWriter(
            config.database_path,
            synchronous=Synchronous(config.store.synchronous),
            max_batch=config.store.batch_max_ops,
            max_delay_ms=config.store.batch_max_delay_ms,
            max_pending=config.store.max_pending_ops,
            max_size_bytes=(
                None if config.store.max_size_mib is None else config.store.max_size_mib << 20
            ),
        )
        await self.writer.start()
        self.commands = CommandService(
            hotel_id=config.hotel_id,
            book=CommandBook(max_in_flight=config.commands.max_in_flight),
            publish=self._publish,
            load=self.store.get_command,
            persist=lambda record: self.writer.submit(store_ops.PutCommand(record)),
            notify=self._command_finished,
        )
        self.link = MqttLink(
            config.mqtt,
            client_id=config.mqtt.client_id or f"bellhop-gateway-{config.hotel_id}",
            subscriptions=codec.subscriptions(config.hotel_id),
            on_message=self._on_message,
            on_state=self._on_link_state,
        )
        from bellhop_edge.api import start_server

        self._server, self.api_port = await start_server(self, self._authenticator())
        self._spawn(self.link.run(), "mqtt")
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
        if self._closed.is_set():
            return
        self._closed.set()
        if self._server is not None:
            await self._server.stop(grace=1.0)
        if hasattr(self, "commands"):
            self.commands.cancel_all()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if hasattr(self, "writer"):
            self._flush_last_seen()
            await self.writer.close()
        if hasattr(self, "store"):
            self.store.close()
        log.info("gateway for hotel %s stopped", self.config.hotel_id)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"gateway-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def _authenticator(self) -> Authenticator:
        api = self.config.api
        verifiers: list[Verifier] = [
            LocalTokens(api.tokens_file or self.config.data_dir / "staff-tokens.json")
        ]
        if api.jwks_file is not None and api.jwks_file.exists():
            verifiers.append(
                JwksVerifier.from_file(
                    api.jwks_file,
                    audience=api.jwt_audience,
                    issuer=api.jwt_issuer,
                    hotel_id=self.config.hotel_id,
                )
            )
        return Authenticator(verifiers)

    # -- ingest -----------------------------------------------------------------
    def _on_message(self, message: aiomqtt.Message) -> None:
        """Every message from the broker, as paho reads it (see mqtt.py)."""
        if self._backlog or self.writer.pending >= self.writer.max_pending // 2:
            self._hold(message)
            return
        self._handle(message)

    def _hold(self, message: aiomqtt.Message) -> None:
        """The disk is behind: keep the message until the writer catches up.

        QoS 1 messages are always kept: the broker sends no more than its
        in-flight window of them unacknowledged, which bounds them. QoS 0
        messages (at most once, by MQTT's own contract) are dropped, and
        counted, once the backlog is full.
        """
        if message.qos == 0 and len(self._backlog) >= BACKLOG_MAX:
            self.hotel.reject("overloaded")
            self._log_reject("overloaded", _device_of(message.topic.value), "writer behind")
            return
        self._backlog.append(message)
        if not self._draining:
            self._draining = True
            self._spawn(self._drain(), "backlog")

    async def _drain(self) -> None:
        high, low = self.writer.max_pending // 2, self.writer.max_pending // 4
        try:
            while self._backlog:
                await self.writer.wait_below(low)
                handled = 0
                while self._backlog and self.writer.pending < high:
                    self._handle(self._backlog.popleft())
                    handled += 1
                    if handled % DRAIN_SLICE == 0:
                        # Thousands may be waiting: let timers, the hand-over
                        # to the writer and LAN calls run in between.
                        await asyncio.sleep(0)
        finally:
            self._draining = False

    def _handle(self, message: aiomqtt.Message) -> None:
        now = now_ms()
        topic = message.topic.value
        payload = message.payload
        if not isinstance(payload, bytes | bytearray):
            payload = str(payload).encode()
        try:
            decoded = codec.decode(
                topic,
                bytes(payload),
                hotel_id=self.config.hotel_id,
                max_bytes=self.config.mqtt.max_payload_bytes,
            )
        except DecodeError as exc:
            self.hotel.reject(exc.reason.value)
            self._log_reject(exc.reason.value, _device_of(topic), exc.detail)
            self.link.ack(message)  # garbage is counted, not redelivered forever
            return
        first_op = self.writer.last_ticket + 1
        changes = self.hotel.apply(decoded, now)
        self._process(changes, now)
        if message.qos > 0:
            connection = self.link.connection
            self.writer.on_outcome(
                first_op, lambda ok: self._settle(message, decoded, connection, ok=ok)
            )

    def _settle(
        self, message: aiomqtt.Message, decoded: DeviceMessage, connection: int, *, ok: bool
    ) -> None:
        """A QoS 1 message's writes are done: acknowledge it, or have it sent again.

        PUBACK means "stored". A message whose writes failed (disk full, I/O
        error) is not acknowledged; the broker keeps it and sends it again on
        the next connection, so the link reconnects, backing off while the
        failures go on.
        """
        if ok:
            self._store_failures = 0
            self.link.ack(message, connection)
            return
        self.hotel.forget(decoded)
        if connection != self.link.connection:
            return  # that connection is gone: the broker resends on the current one
        delay = min(STORE_RETRY_MAX_S, STORE_RETRY_MIN_S * 2 ** min(self._store_failures, 10))
        if self.link.drop(delay):
            self._store_failures += 1
            log.error(
                "a message from %s could not be stored (%s); reconnecting to the broker"
                " in %.1f s so that it sends it again",
                decoded.device_id,
                self.writer.stats.last_error,
                delay,
            )

    def _process(self, changes: Iterable[Change], now: int) -> None:  # noqa: PLR0912 - a branch per change kind
        hotel = self.hotel
        watched = self.bus.active
        for change in changes:
            if isinstance(change, TelemetryAccepted):
                self.writer.submit(store_ops.PutTelemetry(change.points))
                for point in change.points:
                    self._apply_rules(self.rules.on_telemetry(point, now), now)
                if watched:
                    room = (
                        hotel.devices[change.points[0].device_id].room_id if change.points else None
                    )
                    for point in change.points:
                        self.bus.publish(
                            lan_pb2.WatchEventsResponse(telemetry=convert.telemetry(point)), room
                        )
            elif isinstance(change, StateChanged):
                self.writer.submit(store_ops.PutReported(change.state))
                self._apply_rules(self.rules.on_state(change.state, now), now)
                if watched:
                    self.bus.publish(
                        lan_pb2.WatchEventsResponse(state=convert.reported(change.state)),
                        hotel.devices[change.state.device_id].room_id,
                    )
            elif isinstance(change, EventAccepted):
                self.writer.submit(store_ops.PutEvent(change.event))
                self._apply_rules(self.rules.on_event(change.event, now), now)
                if watched:
                    self.bus.publish(
                        lan_pb2.WatchEventsResponse(device_event=convert.event(change.event)),
                        hotel.devices[change.event.device_id].room_id,
                    )
            elif isinstance(change, ConnectivityChanged):
                device = change.device
                self.writer.submit(store_ops.PutDeviceStatus(device))
                self._apply_rules(
                    self.rules.on_connectivity(device.device_id, device.connectivity, now), now
                )
                log.info("device %s is %s", device.device_id, device.connectivity.value)
                if watched:
                    self.bus.publish(
                        lan_pb2.WatchEventsResponse(
                            status=lan_pb2.DeviceStatusChange(
                                device_id=device.device_id,
                                connectivity=convert.CONNECTIVITY[device.connectivity],
                                ts=convert.ts(now),
                            )
                        ),
                        device.room_id,
                    )
            elif isinstance(change, DeviceUpdated):
                self.writer.submit(store_ops.PutDeviceStatus(change.device))
            elif isinstance(change, AckReceived):
                if not self.commands.on_ack(change.device_id, change.ack):
                    hotel.reject("unmatched_ack")
                    self._log_reject(
                        "unmatched_ack",
                        change.device_id,
                        f"ack for unknown command {change.ack.id!r}",
                    )
            elif isinstance(change, Rejected):
                self._log_reject(change.reason, change.device_id, change.detail)

    def _apply_rules(self, actions: Iterable[RaiseAlert | ClearAlert], now: int) -> None:
        for action in actions:
            if isinstance(action, RaiseAlert):
                device = self.hotel.devices.get(action.device_id)
                alert = self.alerts.raise_(action, device.room_id if device else None, now)
            else:
                alert = self.alerts.clear(action.kind, action.device_id, now)
            if alert is not None:
                self._alert_changed(alert)

    def _alert_changed(self, alert: Alert) -> None:
        self.writer.submit(store_ops.PutAlert(alert))
        log.warning(
            "alert %s %s on %s: %s",
            alert.kind.value,
            alert.state.value,
            alert.device_id,
            alert.message,
        )
        self.bus.publish(lan_pb2.WatchEventsResponse(alert=convert.alert(alert)), alert.room_id)

    def _log_reject(self, reason: str, device_id: str, detail: str) -> None:
        key = RejectLog(reason, device_id)
        if key not in self._logged and len(self._logged) < 10_000:
            self._logged.add(key)
            log.warning(
                "rejected message from %s: %s (%s); counted, logged once", device_id, reason, detail
            )

    def _on_link_state(self, state: LinkState) -> None:
        if state is not LinkState.CONNECTED:
            log.debug("broker link %s", state.value)

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
                self._process(self.hotel.check_liveness(now), now)
                self._apply_rules(self.rules.tick(now), now)

    async def _retention_loop(self) -> None:
        policy = RetentionPolicy(
            raw_retention_s=int(self.config.retention.raw_retention_s),
            rollup_bucket_s=int(self.config.retention.rollup_bucket_s),
            rollup_retention_s=int(self.config.retention.rollup_retention_s),
            events_retention_s=int(self.config.retention.events_retention_s),
        )
        while True:
            with self._surviving("retention"):
                await self.writer.apply_retention(policy, now_ms())
            await asyncio.sleep(self.config.retention.run_every_s)

    async def _registry_loop(self) -> None:
        """Pick up rooms and devices changed by `bellhop devices` beside us."""
        version = self.store.registry_version()
        while True:
            await asyncio.sleep(2)
            with self._surviving("registry reload"):
                current = self.store.registry_version()
                if current == version:
                    continue
                gone = self.hotel.reload_registry(
                    self.store.list_rooms(), self.store.list_devices(include_unknown=True)
                )
                version = current
                for device_id in gone:
                    self.rules.forget(device_id)
                log.info(
                    "registry reloaded: %d rooms, %d devices (%d removed)",
                    len(self.hotel.rooms),
                    self.hotel.registered_count,
                    len(gone),
                )

    async def _last_seen_loop(self) -> None:
        while True:
            await asyncio.sleep(5)
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
            self.writer.submit(store_ops.PutLastSeen(seen))

    # -- operations used by the APIs ---------------------------------------------
    async def _publish(self, topic: str, payload: bytes, qos: int) -> None:
        await self.link.publish(topic, payload, qos)

    def _command_finished(self, record: CommandRecord) -> None:
        device = self.hotel.devices.get(record.request.device_id)
        self.bus.publish(
            lan_pb2.WatchEventsResponse(command_result=convert.command_result(record.result)),
            device.room_id if device else None,
        )

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
        self, device_id: str, values: dict[str, Any], *, by: str, expected_version: int = 0
    ) -> DesiredState:
        if not values:
            raise InvalidRequest("values must not be empty")
        state = self.hotel.set_desired(
            device_id, values, by=by, now=now_ms(), expected_version=expected_version
        )
        self.writer.submit(store_ops.PutDesired(state))
        return state

    def list_alerts(self, states: list[AlertState], room_id: str | None, limit: int) -> list[Alert]:
        return self.store.list_alerts(states=states or None, room_id=room_id, limit=limit)

    def acknowledge_alert(self, alert_id: str, *, by: str, note: str) -> Alert:
        alert = self.alerts.acknowledge(alert_id, by, note, now_ms())
        self._alert_changed(alert)
        return alert

    async def query_telemetry(
        self, device_id: str, metric: str, start: int, end: int, limit: int
    ) -> list[TelemetryPoint]:
        self.hotel.device(device_id)
        await self.writer.flush()
        return await asyncio.to_thread(
            self.store.query_telemetry, device_id, metric, start, end, limit
        )

    def status_message(self) -> lan_pb2.GetGatewayStatusResponse:
        hotel = self.hotel
        return lan_pb2.GetGatewayStatusResponse(
            hotel_id=hotel.hotel_id,
            broker_connected=self.link.connected.is_set(),
            devices_online=hotel.online,
            devices_total=hotel.registered_count,
            rejected=dict(hotel.rejected),
            accepted=hotel.accepted,
            started_at=convert.ts(self.started_at),
        )


def _device_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) > 3 else "?"


def _rules_config(config: EdgeConfig) -> RulesConfig:
    rules = config.rules
    return RulesConfig(
        temperature_min_c=rules.temperature_min_c,
        temperature_max_c=rules.temperature_max_c,
        temperature_hysteresis_c=rules.temperature_hysteresis_c,
        gas_ppm_max=rules.gas_ppm_max,
        door_open_max_s=rules.door_open_max_s,
        battery_low_pct=rules.battery_low_pct,
    )


async def run(config: EdgeConfig) -> None:
    """Run a gateway until cancelled (Ctrl-C)."""
    async with Gateway(config) as gateway:
        # Start-up objects (config, registry, protobuf descriptors) live for the
        # whole run: keep them out of the collector's way (fewer, shorter pauses).
        gc.collect()
        gc.freeze()
        with contextlib.suppress(asyncio.CancelledError):
            await gateway.wait_closed()
