"""The downlink's items: what the relay tells a gateway, as rows and as bridge frames.

An item is a `downlink` row (bridge/downlink.py sends them).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from bellhop.bridge.v1 import bridge_pb2
from bellhop.common.v1 import common_pb2
from google.protobuf.struct_pb2 import Struct
from sqlalchemy.engine import Row

__all__ = [
    "OUTSTANDING",
    "Item",
    "ItemKind",
    "ItemState",
    "carried",
    "carry",
    "frame_of",
    "now_ms",
]


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
    """The bridge frame of a downlink row (or of an item just queued)."""
    body = row.body
    if row.kind == ItemKind.COMMAND:
        command = common_pb2.Command(
            command_id=row.item_id, device_id=row.device_id or "", name=body["name"]
        )
        params = Struct()
        params.update(body.get("params") or {})
        command.params.CopyFrom(params)
        command.expires_at.FromMilliseconds(row.expires_at)
        remote = bridge_pb2.RemoteCommand(
            command=command, requested_by=body["by"], timeout_ms=int(body["timeout_ms"])
        )
        return bridge_pb2.Frame(command=remote)
    if row.kind == ItemKind.DESIRED:
        values = Struct()
        values.update(body["values"])
        change = bridge_pb2.DesiredStateChange(
            change_id=row.item_id,
            device_id=row.device_id or "",
            values=values,
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
