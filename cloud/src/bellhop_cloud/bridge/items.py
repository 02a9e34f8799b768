"""The downlink's items: what the relay tells a gateway, as rows and as bridge frames.

An item is a `downlink` row (bridge/downlink.py sends them). Building an item's frame
never raises (`frame_of`): one row that cannot be carried as it is must not stop the
rows sent with it, so it goes as a frame the gateway refuses, and answers as failed,
naming why (`unsendable` says so beforehand).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.engine import Row

__all__ = [
    "OUTSTANDING",
    "SAFE_INTEGER",
    "Item",
    "ItemKind",
    "ItemState",
    "carried",
    "carry",
    "frame_of",
    "now_ms",
    "unsendable",
]

log = logging.getLogger(__name__)

# Every integer within +/- this is exact as a double, which is what a bridge frame's
# values (protobuf's Struct) and a JSON number hold: past it, integers round silently.
SAFE_INTEGER: Final = 2**53


class ItemKind(StrEnum):
    COMMAND = "command"
    ALERT_ACK = "alert_ack"
    DESIRED = "desired"


class ItemState(StrEnum):
    QUEUED = "queued"  # not sent yet
    SENT = "sent"  # sent at least once, no answer yet
    DONE = "done"  # answered: a command's result, or the alert's acknowledgement came back
    EXPIRED = "expired"  # its time ran out before it was done


OUTSTANDING: Final = (ItemState.QUEUED.value, ItemState.SENT.value)


@dataclass(frozen=True, slots=True)
class Item:
    hotel_id: str
    item_id: str  # a command's id, "ack:<alert id>", or a desired change's "desired:<id>"
    kind: ItemKind
    device_id: str | None
    body: dict[str, Any]
    requested_by: str
    requested_at: int
    expires_at: int

    def row(self, sent_at: int | None = None) -> dict[str, Any]:
        """Its downlink row: queued, or already sent at `sent_at` (by the node that queued
        it and holds the hotel's bridge, which sends it as soon as it is committed)."""
        return {
            "hotel_id": self.hotel_id,
            "item_id": self.item_id,
            "kind": self.kind.value,
            "device_id": self.device_id,
            "body": self.body,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "expires_at": self.expires_at,
            "state": ItemState.QUEUED.value if sent_at is None else ItemState.SENT.value,
            "sent_at": sent_at,
            "sends": 0 if sent_at is None else 1,
        }


def carry(items: Sequence[Item]) -> str:
    """The items as a nudge carries them to the node holding their hotel's bridge (the
    hotel is the nudge's own first word): that node sends them without reading them back."""
    return json.dumps(
        [
            (
                i.item_id,
                i.kind.value,
                i.device_id,
                i.body,
                i.requested_by,
                i.requested_at,
                i.expires_at,
            )
            for i in items
        ],
        separators=(",", ":"),
    )


def carried(hotel_id: str, text: str) -> list[Item]:
    """The items a nudge carried (`carry`), or none when the text is not what `carry`
    makes: the receiver then reads the queued rows, as for a nudge that carries nothing."""
    try:
        rows = json.loads(text)
        items = [
            Item(hotel_id, item_id, ItemKind(kind), device_id, body, by, at, expires)
            for item_id, kind, device_id, body, by, at, expires in rows
            if isinstance(item_id, str)
            and (device_id is None or isinstance(device_id, str))
            and isinstance(body, dict)
            and isinstance(by, str)
            and type(at) is int
            and type(expires) is int
        ]
        # All or none: a nudge whose items are partly readable is read from the database.
        return items if isinstance(rows, list) and len(items) == len(rows) else []
    except (ValueError, TypeError):  # not JSON, not a list of 7-lists, an unknown kind
        return []


def now_ms() -> int:
    return int(time.time() * 1000)


def frame_of(row: Item | Row[Any]) -> bridge_pb2.Frame:
    """The bridge frame of a downlink row (or of an item just queued). Never raises: a
    row that cannot be carried as it is goes as a frame the gateway refuses before
    anything runs (`unsendable` says why), so that it cannot stop the rows sent with it."""
    try:
        return _frame(row)
    except Exception as exc:  # a row no API path writes (an older relay's, a hand-made one)
        log.warning("downlink item %r cannot be encoded: %s", str(row.item_id)[:64], exc)
        return _refusable(row)


def unsendable(row: Item | Row[Any]) -> str | None:
    """Why the gateway will refuse the row as it is stored, or None: an integer beyond
    +/-2**53 or a number that is not finite (carried as an infinity, refused), a list or
    an object (refused), a row missing what its frame needs. The sender may answer such
    a row as failed itself instead of sending it."""
    try:
        body = row.body
        kind = ItemKind(row.kind)
        if kind == ItemKind.ALERT_ACK:
            return None if isinstance(body.get("alert_id"), str) else "no alert id"
        values = (body["params"] or {}) if kind == ItemKind.COMMAND else body["values"]
        if kind == ItemKind.COMMAND and not isinstance(body.get("name"), str):
            return "no command name"
        if not isinstance(values, Mapping):
            return "its values are not an object"
        for key, value in values.items():
            why = _unencodable(value)
            if why is not None:
                return f"{key}: {why}"
        _frame(row)
    except Exception as exc:  # what `frame_of` would have replaced
        return f"it cannot be encoded ({type(exc).__name__})"
    return None


def _unencodable(value: Any) -> str | None:
    if value is None or isinstance(value, bool | str):
        return None
    if isinstance(value, int):
        ok = -SAFE_INTEGER <= value <= SAFE_INTEGER
        return None if ok else "an integer beyond +/-2**53 (not exact as a JSON number)"
    if isinstance(value, float):
        return None if math.isfinite(value) else "not a finite number"
    return "not a boolean, number, string or null"


def _struct(values: Mapping[str, Any]) -> Struct:
    """Flat values as a Struct. An integer a double cannot hold exactly goes as an infinity
    of its sign (never rounded to another number): the gateway refuses it, naming the
    field ("must be a finite number"). A list or an object goes as an empty object,
    which it refuses the same way."""
    struct = Struct()
    for key, value in values.items():
        name = str(key)
        if value is None or isinstance(value, bool | str | float):
            struct[name] = value
        elif isinstance(value, int):
            exact = -SAFE_INTEGER <= value <= SAFE_INTEGER
            struct[name] = float(value) if exact else (math.inf if value > 0 else -math.inf)
        else:
            struct.get_or_create_struct(name)
    return struct


def _frame(row: Item | Row[Any]) -> bridge_pb2.Frame:
    body = row.body
    if row.kind == ItemKind.COMMAND:
        command = common_pb2.Command(
            command_id=row.item_id, device_id=row.device_id or "", name=body["name"]
        )
        command.params.CopyFrom(_struct(body.get("params") or {}))
        command.expires_at.FromMilliseconds(row.expires_at)
        remote = bridge_pb2.RemoteCommand(
            command=command, requested_by=body["by"], timeout_ms=int(body["timeout_ms"])
        )
        return bridge_pb2.Frame(command=remote)
    if row.kind == ItemKind.DESIRED:
        change = bridge_pb2.DesiredStateChange(
            change_id=row.item_id,
            device_id=row.device_id or "",
            values=_struct(body["values"]),
            base_version=int(body.get("base_version") or 0),
            set_by=body["by"],
        )
        change.set_at.FromMilliseconds(row.requested_at)
        return bridge_pb2.Frame(desired_change=change)
    ack = bridge_pb2.AlertAcknowledgement(
        alert_id=body["alert_id"], acknowledged_by=body["by"], note=body.get("note") or ""
    )
    ack.acknowledged_at.FromMilliseconds(row.requested_at)
    return bridge_pb2.Frame(alert_acknowledgement=ack)


def _refusable(row: Item | Row[Any]) -> bridge_pb2.Frame:
    """A frame for a row `_frame` could not build, which the gateway refuses as it is: a
    command without a name (answered failed, "name: required"), a desired change with a
    negative base version, an acknowledgement of no alert."""
    item_id = str(row.item_id or "")[:80]
    device_id = str(row.device_id or "")[:64]
    if row.kind == ItemKind.COMMAND:
        command = common_pb2.Command(command_id=item_id, device_id=device_id)
        return bridge_pb2.Frame(command=bridge_pb2.RemoteCommand(command=command))
    if row.kind == ItemKind.DESIRED:
        change = bridge_pb2.DesiredStateChange(
            change_id=item_id, device_id=device_id, base_version=-1
        )
        return bridge_pb2.Frame(desired_change=change)
    return bridge_pb2.Frame(alert_acknowledgement=bridge_pb2.AlertAcknowledgement())
