"""Ingest: a device message and a time in; write ops and live events out.

    ingest = Ingest(hotel, RuleEngine(config.rules), AlertBook(), ReplayMemory(),
                    max_payload_bytes=4096)
    effects = ingest.receive(topic, payload, qos, now_ms, live=bus.active)
    for op in effects.ops: writer.submit(op)
    for event in effects.live: bus.publish(event)
    for ack in effects.acks: commands.on_ack(ack.device_id, ack.ack)

One message goes through the whole core here: the codec decodes it,
`ReplayMemory` recognises one that was already stored, the `Hotel` applies
it (registry, state, liveness), the
`RuleEngine` evaluates it and the `AlertBook` turns the rules' verdicts into
alerts. What comes out is data: the ops to commit (each one that the cloud
must hear about appends its outbox row in the same transaction; a QoS 1
message's ops travel as one `PutMessage` with its replay receipt), the events
for live watchers, the device acks for the command driver, and what is worth
a log line. No socket, database or clock is touched.

`receive` and the other entry points return the same `Effects` object,
emptied at each call, so the hot path allocates no result containers; read
it before the next call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from bellhop_devices import codec
from bellhop_devices.errors import DecodeError
from bellhop_devices.messages import DeviceMessage

from bellhop_edge.core.alerts import AlertBook
from bellhop_edge.core.hotel import (
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
from bellhop_edge.core.model import (
    Alert,
    ConnectivityChange,
    Device,
    LiveEvent,
    Room,
)
from bellhop_edge.core.ops import (
    PutAlert,
    PutDeviceStatus,
    PutEvent,
    PutMessage,
    PutReported,
    PutTelemetry,
    WriteOp,
)
from bellhop_edge.core.replay import ReplayMemory, replay_key
from bellhop_edge.core.rules import Action, RaiseAlert, RuleEngine

__all__ = ["Effects", "Ingest"]

# Distinct (reason, device) pairs whose first reject is logged; the rest are counted.
REJECT_LOG_MAX: Final = 10_000


@dataclass(slots=True)
class Effects:
    """What one input caused; the driver carries it out."""

    ops: list[WriteOp] = field(default_factory=list)
    live: list[LiveEvent] = field(default_factory=list)
    acks: list[AckReceived] = field(default_factory=list)
    # Worth a log line: alerts raised, acknowledged or cleared; devices that
    # went online or offline; the first reject of each (reason, device).
    alerts: list[Alert] = field(default_factory=list)
    connectivity: list[Device] = field(default_factory=list)
    rejects: list[Rejected] = field(default_factory=list)
    # The decoded message, when the payload was valid.
    message: DeviceMessage | None = None

    def clear(self) -> None:
        self.ops.clear()
        self.live.clear()
        self.acks.clear()
        self.alerts.clear()
        self.connectivity.clear()
        self.rejects.clear()
        self.message = None


class Ingest:
    """The hotel's core: every device message and clock tick goes through here."""

    def __init__(
        self,
        hotel: Hotel,
        rules: RuleEngine,
        alerts: AlertBook,
        replay: ReplayMemory,
        *,
        max_payload_bytes: int,
    ) -> None:
        self.hotel = hotel
        self.rules = rules
        self.alerts = alerts
        self.replay = replay
        self._max_bytes = max_payload_bytes
        self._effects = Effects()
        self._live = False
        self._logged: set[tuple[str, str]] = set()

    # -- inputs -------------------------------------------------------------------------
    def receive(self, topic: str, payload: bytes, qos: int, now: int, *, live: bool) -> Effects:
        """One MQTT message as the broker delivered it."""
        fx = self._begin(live)
        try:
            message = codec.decode(
                topic, payload, hotel_id=self.hotel.hotel_id, max_bytes=self._max_bytes
            )
        except DecodeError as exc:
            # Garbage is counted (and acknowledged by the driver), not redelivered forever.
            self._reject(exc.reason.value, _device_of(topic), exc.detail)
            return fx
        fx.message = message
        hotel, device_id = self.hotel, message.device_id
        # Only a QoS 1 delivery can come twice: a device that publishes at QoS 0
        # never sends again, and the broker never resends a QoS 0 message.
        key = replay_key(message) if qos > 0 else None
        if key is not None and hotel.is_registered(device_id):
            if self.replay.seen(device_id, key):
                self._log_once(hotel.duplicate(device_id, now))
                return fx
            accepted = hotel.accepted
            self._apply(hotel.apply(message, now), now)
            if hotel.accepted == accepted:
                return fx  # refused (a clock far ahead): nothing to remember
            self.replay.remember(device_id, key)
            fx.ops[:] = [PutMessage(key, tuple(fx.ops))]
            return fx
        self._apply(hotel.apply(message, now), now)
        return fx

    def tick(self, now: int) -> Effects:
        """Liveness and timers: silent devices go offline, doors left open raise."""
        fx = self._begin(live=True)
        self._apply(self.hotel.check_liveness(now), now)
        self._rule_actions(self.rules.tick(now), now)
        return fx

    def acknowledge_alert(self, alert_id: str, *, by: str, note: str, now: int) -> Effects:
        """A person saw the alert; `effects.alerts[0]` is the alert as it now stands."""
        fx = self._begin(live=True)
        self._alert_changed(self.alerts.acknowledge(alert_id, by, note, now))
        return fx

    def unmatched_ack(self, device_id: str, command_id: str) -> Effects:
        """A device acknowledged a command nobody sent it (or another device's)."""
        fx = self._begin(live=False)
        self._reject("unmatched_ack", device_id, f"ack for unknown command {command_id!r}")
        return fx

    def overloaded(self, topic: str) -> Effects:
        """A QoS 0 message dropped because the writer was too far behind."""
        fx = self._begin(live=False)
        self._reject("overloaded", _device_of(topic), "writer behind")
        return fx

    def reload_registry(self, rooms: Iterable[Room], devices: Iterable[Device]) -> list[str]:
        """Rooms and devices changed by a tool; returns the ids no longer registered."""
        gone = self.hotel.reload_registry(rooms, devices)
        for device_id in gone:
            self.rules.forget(device_id)
            self.replay.drop_device(device_id)
        return gone

    def forget(self, message: DeviceMessage) -> None:
        """Its writes failed: the broker sends it again, and then it must be stored."""
        key = replay_key(message)
        if key is not None:
            self.replay.forget(message.device_id, key)

    # -- applying changes ---------------------------------------------------------------
    def _begin(self, live: bool) -> Effects:
        self._effects.clear()
        self._live = live
        return self._effects

    def _apply(self, changes: Iterable[Change], now: int) -> None:  # noqa: PLR0912 - a branch per change
        fx, rules, live = self._effects, self.rules, self._live
        for change in changes:
            if isinstance(change, TelemetryAccepted):
                points = change.points
                fx.ops.append(PutTelemetry(points))
                for point in points:
                    self._rule_actions(rules.on_telemetry(point, now), now)
                if live and points:
                    room = self._room_of(points[0].device_id)
                    fx.live.extend(LiveEvent(point, room) for point in points)
            elif isinstance(change, StateChanged):
                fx.ops.append(PutReported(change.state))
                self._rule_actions(rules.on_state(change.state, now), now)
                if live:
                    fx.live.append(LiveEvent(change.state, self._room_of(change.state.device_id)))
            elif isinstance(change, EventAccepted):
                fx.ops.append(PutEvent(change.event))
                self._rule_actions(rules.on_event(change.event, now), now)
                if live:
                    fx.live.append(LiveEvent(change.event, self._room_of(change.event.device_id)))
            elif isinstance(change, ConnectivityChanged):
                device = change.device
                fx.ops.append(PutDeviceStatus(device))
                fx.connectivity.append(device)
                actions = rules.on_connectivity(device.device_id, device.connectivity, now)
                self._rule_actions(actions, now)
                if live:
                    status = ConnectivityChange(device.device_id, device.connectivity, now)
                    fx.live.append(LiveEvent(status, device.room_id))
            elif isinstance(change, DeviceUpdated):
                fx.ops.append(PutDeviceStatus(change.device))
            elif isinstance(change, AckReceived):
                fx.acks.append(change)
            elif isinstance(change, Rejected):
                self._log_once(change)

    def _rule_actions(self, actions: Iterable[Action], now: int) -> None:
        for action in actions:
            if isinstance(action, RaiseAlert):
                device = self.hotel.devices.get(action.device_id)
                alert = self.alerts.raise_(action, device.room_id if device else None, now)
            else:
                alert = self.alerts.clear(action.kind, action.device_id, now)
            if alert is not None:
                self._alert_changed(alert)

    def _alert_changed(self, alert: Alert) -> None:
        fx = self._effects
        fx.ops.append(PutAlert(alert))
        fx.alerts.append(alert)
        if self._live:
            fx.live.append(LiveEvent(alert, alert.room_id))

    def _room_of(self, device_id: str) -> str | None:
        device = self.hotel.devices.get(device_id)
        return device.room_id if device is not None else None

    def _reject(self, reason: str, device_id: str, detail: str) -> None:
        self.hotel.reject(reason)
        self._log_once(Rejected(reason, device_id, detail))

    def _log_once(self, rejected: Rejected) -> None:
        key = (rejected.reason, rejected.device_id)
        if key not in self._logged and len(self._logged) < REJECT_LOG_MAX:
            self._logged.add(key)
            self._effects.rejects.append(rejected)


def _device_of(topic: str) -> str:
    parts = topic.split("/")
    return parts[3] if len(parts) > 3 else "?"
