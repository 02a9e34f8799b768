"""One gateway's connection on a relay node, as the bridge endpoint keeps it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from bellhop_bridge import Event, RelayConnection
from websockets.asyncio.server import ServerConnection

from bellhop_cloud.bridge.identities import Identity

if TYPE_CHECKING:
    from bellhop_cloud.bridge.batches import Batches

__all__ = ["Link", "who"]


class Link:
    """One gateway's connection on this node, from its WebSocket's opening."""

    __slots__ = (
        "admitted",
        "batches",
        "close_reason",
        "conn",
        "heard_at",
        "held",
        "identity",
        "lock",
        "seen_at",
        "ws",
    )

    def __init__(self, ws: ServerConnection, conn: RelayConnection) -> None:
        self.ws = ws
        self.conn = conn
        self.identity: Identity | None = None
        self.heard_at = 0.0
        self.seen_at = float("-inf")
        self.close_reason = "closed"
        self.admitted = False  # holds one of the Admission's slots
        self.held: list[Event] = []  # read before its handshake's turn, handled at it
        self.lock = asyncio.Lock()  # frames leave in the order they were made
        self.batches: Batches | None = None  # applied beside the reader, once it is open


def who(link: Link) -> str:
    return link.identity.gateway_id if link.identity is not None else "an unidentified gateway"
