"""What a batch of bridge events asks of the relay's database, without touching it.

    plan = Plan.of(events, hotel_id)     # events already past `Dedup`
    await sync.apply(conn, plan, ...)    # one transaction

A sans-I/O core: events in, rows out, grouped by table so a batch of
thousands is a handful of statements. Later events win where one row keeps
only the latest (a device's reported state, an alert, a command's result).
Every value from the edge is checked as it crosses this boundary; an event
that breaks a rule is skipped and counted (`Plan.rejected`), never applied
half-way and never allowed to stall its lane.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from bellhop_bridge import ProtocolError, frames
from google.protobuf.json_format import MessageToDict
from google.protobuf.struct_pb2 import Struct

__all__ = ["Plan", "Points", "valid_id"]

_ID: Final = re.compile(r"[^\s\x00-\x1f\x7f]{1,64}")
_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
TEXT_MAX: Final = 500
GAP_COUNT_MAX: Final = 2**48
FIELDS_MAX: Final = 64  # desired fields of a device, removed ones included
# A Timestamp the relay takes (`frames.millis`): years 1-9999, nanos within a second.
_SECONDS_MIN: Final = -62_135_596_800
_SECONDS_MAX: Final = 253_402_300_799
_NANOS_PER_SECOND: Final = 1_000_000_000
_NANOS_PER_MS: Final = 1_000_000
# Device ids and metric names that passed their pattern, so that the next point of
# the same sensor is checked by a set lookup; emptied when they reach this many.
_KNOWN_MAX: Final = 4096
_known_ids: set[str] = set()
_known_names: set[str] = set()

_KINDS: Final = {
    v: k.removeprefix("DEVICE_KIND_").lower() for k, v in common_pb2.DeviceKind.items()
}
_EVENTS: Final = {v: k.removeprefix("EVENT_KIND_").lower() for k, v in common_pb2.EventKind.items()}
_ALERT_KINDS: Final = {
    v: k.removeprefix("ALERT_KIND_").lower() for k, v in common_pb2.AlertKind.items()
}
_SEVERITIES: Final = {
    v: k.removeprefix("ALERT_SEVERITY_").lower() for k, v in common_pb2.AlertSeverity.items()
}
_ALERT_STATES: Final = {
    v: k.removeprefix("ALERT_STATE_").lower() for k, v in common_pb2.AlertState.items()
}
_COMMAND_STATUSES: Final = {
    v: k.removeprefix("COMMAND_STATUS_").lower() for k, v in common_pb2.CommandStatus.items()
}


class _Skip(Exception):
    """This event breaks a rule; it is counted and skipped."""


def valid_id(value: str) -> bool:
    """An edge id the relay can hold: 1-64 characters, no spaces or control characters."""
    return _ID.fullmatch(value) is not None


def _known(value: str, pattern: re.Pattern[str], known: set[str]) -> bool:
    """`value` matches `pattern` (remembered in `known` when it does)."""
    if pattern.fullmatch(value) is None:
        return False
    if len(known) >= _KNOWN_MAX:
        known.clear()
    known.add(value)
    return True


def _id(value: str, what: str) -> str:
    if _ID.fullmatch(value) is None:
        raise _Skip(f"{what} {value[:40]!r}")
    return value


def _text(value: str, limit: int = TEXT_MAX) -> str:
    if _CONTROL.search(value):
        raise _Skip("control characters")
    return value[:limit]


def _ms(stamp: Any) -> int:
    try:
        return frames.millis(stamp, "time")
    except ProtocolError:
        raise _Skip("a time outside years 1-9999") from None


def _count(value: int, what: str) -> int:
    # Gap counts are added up in BIGINT columns; no outbox could ever drop more.
    if value > GAP_COUNT_MAX:
        raise _Skip(f"{what} {value}")
    return value


def _json(struct: Any) -> dict[str, Any]:
    try:
        values: dict[str, Any] = MessageToDict(struct)
    except ValueError as exc:  # an infinity, which JSON cannot hold
        raise _Skip(str(exc)) from None
    return values


def _fields(w: common_pb2.DesiredState) -> dict[str, dict[str, Any]]:
    """Who set each desired field and when (docs/conflicts.md)."""
    if len(w.fields) > FIELDS_MAX:
        raise _Skip(f"{len(w.fields)} desired fields")
    out = {}
    for name, f in w.fields.items():
        if _NAME.fullmatch(name) is None:
            raise _Skip(f"desired field {name[:40]!r}")
        out[name] = {
            "set_at": _ms(f.set_at),
            "set_by": _text(f.set_by, 200),
            "safety": f.safety,
            "safety_until": _ms(f.safety_until) if f.HasField("safety_until") else None,
            "removed": f.removed,
        }
    return out


def _outcomes(w: common_pb2.DesiredState) -> list[dict[str, Any]]:
    """How the last change made through the cloud was merged, field by field."""
    if len(w.outcomes) > FIELDS_MAX:
        raise _Skip(f"{len(w.outcomes)} desired outcomes")
    out = []
    for o in w.outcomes:
        if _NAME.fullmatch(o.field) is None:
            raise _Skip(f"desired field {o.field[:40]!r}")
        pair = Struct()
        pair.fields["r"].CopyFrom(o.remote_value)
        pair.fields["l"].CopyFrom(o.local_value)
        values = _json(pair)
        out.append(
            {
                "field": o.field,
                "applied": o.applied,
                "reason": _text(o.reason, 32),
                "remote_value": values.get("r"),
                "local_value": values.get("l"),
            }
        )
    return out


@dataclass(slots=True)
class Points:
    """A batch's telemetry points of one hotel, column by column.

    Columns because that is how they are written: PostgreSQL takes each as one
    array of a single statement, SQLite as the rows of one `executemany`.
    """

    hotel_id: str
    device_id: list[str] = field(default_factory=list)
    metric: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ts)

    def tuples(self) -> Iterator[tuple[str, str, str, int, float]]:
        """(hotel_id, device_id, metric, ts, value) per point."""
        return zip(
            repeat(self.hotel_id), self.device_id, self.metric, self.ts, self.value, strict=False
        )

    def rows(self) -> list[dict[str, Any]]:
        """One mapping per point, keyed by the telemetry table's columns."""
        keys = ("hotel_id", "device_id", "metric", "ts", "value")
        return [dict(zip(keys, point, strict=True)) for point in self.tuples()]


@dataclass(slots=True)
class Plan:
    hotel_id: str
    telemetry: Points = field(init=False)
    states: dict[str, tuple[dict[str, Any], int]] = field(default_factory=dict)
    desired: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # registry: latest
    removed: set[str] = field(default_factory=set)
    rooms: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    last_seq: dict[int, int] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    # Commands the gateway refused because their id was used before for another command
    # (`RemoteCommandResult.id_reused`): their rows in `commands` are no results of theirs.
    reused: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.telemetry = Points(self.hotel_id)

    @classmethod
    def of(cls, events: Iterable[bridge_pb2.OutboxEvent], hotel_id: str) -> Plan:
        plan = cls(hotel_id)
        last_seq = plan.last_seq
        points = plan.telemetry
        device_ids, metrics, stamps, values = (
            points.device_id,
            points.metric,
            points.ts,
            points.value,
        )
        ids, names, isfinite = _known_ids, _known_names, math.isfinite
        for event in events:
            lane, seq = event.lane, event.seq
            top = last_seq.get(lane)
            if top is None or seq > top:
                last_seq[lane] = seq
            if event.HasField("telemetry"):
                # The bulk of a backlog: the same checks as `_add`, inline. A point that
                # fails any goes to `_add`, which says which.
                p = event.telemetry
                device_id, metric, value, stamp = p.device_id, p.metric, p.value, p.ts
                seconds, nanos = stamp.seconds, stamp.nanos
                if (
                    (metric in names or _known(metric, _NAME, names))
                    and isfinite(value)
                    and (device_id in ids or _known(device_id, _ID, ids))
                    and _SECONDS_MIN <= seconds <= _SECONDS_MAX
                    and 0 <= nanos < _NANOS_PER_SECOND
                ):
                    device_ids.append(device_id)
                    metrics.append(metric)
                    stamps.append(seconds * 1000 + nanos // _NANOS_PER_MS)
                    values.append(value)
                    continue
            try:
                plan._add(event)
            except _Skip as why:
                plan.rejected.append(f"seq {event.seq}: {why}")
        return plan

    @classmethod
    def answer(cls, answer: bridge_pb2.RemoteCommandResult, hotel_id: str) -> Plan:
        """A gateway's direct answer to a command, checked as its outbox events are. A
        refusal of a reused id is known by the answer's flag alone (in `reused`), never by
        its error's words, which a device's own failure may repeat."""
        plan = cls.of([bridge_pb2.OutboxEvent(command_result=answer.result)], hotel_id)
        if answer.id_reused:
            plan.reused.update(plan.commands)
        return plan

    @property
    def empty(self) -> bool:
        return not (
            self.telemetry
            or self.states
            or self.desired
            or self.devices
            or self.removed
            or self.rooms
            or self.events
            or self.alerts
            or self.commands
            or self.gaps
        )

    def _add(self, event: bridge_pb2.OutboxEvent) -> None:
        kind = event.WhichOneof("payload")
        hotel_id = self.hotel_id
        if kind == "telemetry":
            p = event.telemetry
            if _NAME.fullmatch(p.metric) is None or not math.isfinite(p.value):
                raise _Skip(f"telemetry {p.metric[:40]!r}={p.value}")
            points = self.telemetry
            points.device_id.append(_id(p.device_id, "device"))
            points.metric.append(p.metric)
            points.ts.append(_ms(p.ts))
            points.value.append(p.value)
        elif kind == "state":
            s = event.state
            self.states[_id(s.device_id, "device")] = (_json(s.values), _ms(s.updated_at))
        elif kind == "desired":
            w = event.desired
            device_id = _id(w.device_id, "device")
            self.desired[device_id] = {
                "hotel_id": hotel_id,
                "device_id": device_id,
                "version": w.version,
                "values": _json(w.values),
                "updated_at": _ms(w.updated_at),
                "updated_by": _text(w.updated_by, 200) or None,
                "fields": _fields(w) or None,
                "outcomes": _outcomes(w) or None,
                "change_id": _text(w.change_id, 80) or None,
            }
        elif kind == "device":
            d = event.device
            device_id = _id(d.device_id, "device")
            if not d.registered:
                self.removed.add(device_id)
                self.devices.pop(device_id, None)
                return
            self.removed.discard(device_id)
            self.devices[device_id] = {
                "room_id": _id(d.room_id, "room") if d.room_id else None,
                "kind": _KINDS.get(d.kind, "unspecified"),
                "firmware": _text(d.firmware, 64) or None,
                "online": d.connectivity == common_pb2.CONNECTIVITY_ONLINE,
                "last_seen_ms": _ms(d.last_seen) if d.HasField("last_seen") else None,
            }
        elif kind == "room":
            r = event.room
            room_id = _id(r.room_id, "room")
            self.rooms[room_id] = {"name": _text(r.name, 200) or room_id, "floor": r.floor}
        elif kind == "device_event":
            e = event.device_event
            self.events.append(
                {
                    "hotel_id": hotel_id,
                    "device_id": _id(e.device_id, "device"),
                    "kind": _EVENTS.get(e.kind, "unspecified"),
                    "ts": _ms(e.ts),
                    "data": _json(e.data),
                }
            )
        elif kind == "alert":
            self._alert(event.alert)
        elif kind == "command_result":
            c = event.command_result
            self.commands[_id(c.command_id, "command")] = {
                "hotel_id": hotel_id,
                "command_id": c.command_id,
                "device_id": _id(c.device_id, "device"),
                "status": _COMMAND_STATUSES.get(c.status, "unspecified"),
                "result": _json(c.result) if c.HasField("result") else None,
                "error": _text(c.error) or None,
                "completed_at": _ms(c.completed_at) if c.HasField("completed_at") else None,
            }
        elif kind == "gap":
            g = event.gap
            self.gaps.append(
                {
                    "lane": event.lane,
                    "first_seq": _count(g.first_seq, "first_seq"),
                    "last_seq": _count(g.last_seq, "last_seq"),
                    "telemetry_points": _count(g.telemetry_points, "telemetry_points"),
                    "other_events": _count(g.other_events, "other_events"),
                    "oldest_ms": _ms(g.oldest) if g.HasField("oldest") else None,
                    "newest_ms": _ms(g.newest) if g.HasField("newest") else None,
                    "reason": _text(g.reason, 32) or "unknown",
                }
            )
        else:
            raise _Skip(f"an event of kind {kind}")

    def _alert(self, a: common_pb2.Alert) -> None:
        alert_id = _id(a.alert_id, "alert")
        self.alerts[alert_id] = {
            "alert_id": alert_id,
            "hotel_id": self.hotel_id,
            "kind": _ALERT_KINDS.get(a.kind, "unspecified"),
            "severity": _SEVERITIES.get(a.severity, "unspecified"),
            "state": _ALERT_STATES.get(a.state, "unspecified"),
            "device_id": _id(a.device_id, "device"),
            "room_id": _id(a.room_id, "room") if a.room_id else None,
            "message": _text(a.message),
            "raised_at": _ms(a.raised_at),
            "acknowledged_at": _ms(a.acknowledged_at) if a.HasField("acknowledged_at") else None,
            "acknowledged_by": _text(a.acknowledged_by, 200) or None,
            "note": _text(a.note, 1000) or None,
            "cleared_at": _ms(a.cleared_at) if a.HasField("cleared_at") else None,
        }
