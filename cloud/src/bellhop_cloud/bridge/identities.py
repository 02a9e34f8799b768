"""Gateways' identities for the handshake, looked up in batches.

    identities = Identities(store)
    identity = await identities.get(gateway_id)    # None: never enrolled
    identity.verify(message, signature)
    identity.lanes                                 # None: no link row (a first connection)

Every Hello waiting for its gateway's enrolment at a moment is answered by one
query (`id IN (...)`, the link row's lanes joined), so a reconnect storm of
thousands of gateways costs a few queries per second instead of a query and a
transaction each, and the busier the relay the larger the batch. Nothing is
kept between handshakes: each sees the enrolment as it is then, a revocation
included (live bridges are checked by the endpoint's watcher).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bellhop_cloud.bridge.sync import BULK, PRIORITY
from bellhop_cloud.db.schema import gateway_links, gateways
from bellhop_cloud.db.store import Store

__all__ = ["Identities", "Identity"]

CHUNK: Final = 500  # ids per IN (...) query


@dataclass(frozen=True, slots=True)
class Identity:
    gateway_id: str
    hotel_id: str
    active: bool
    key: Ed25519PublicKey | None  # None: the stored key is not a valid Ed25519 key
    lanes: dict[int, int] | None  # each lane's last applied seq; None: no link row yet
    org_id: str = ""  # the organisation of its hotel (its Welcome names it)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this gateway's Ed25519 signature of `message`."""
        if self.key is None:
            return False
        try:
            self.key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _key(raw: bytes) -> Ed25519PublicKey | None:
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        return None


class Identities:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._wanted: dict[str, asyncio.Future[Identity | None]] = {}
        self._loading: asyncio.Task[None] | None = None
        self.queries = 0  # for tests and benchmarks

    async def get(self, gateway_id: str) -> Identity | None:
        future = self._wanted.get(gateway_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._wanted[gateway_id] = future
            if self._loading is None:
                self._loading = asyncio.create_task(self._load(), name="bridge-identities")
        return await asyncio.shield(future)

    async def _load(self) -> None:
        try:
            await asyncio.sleep(0)  # let the Hellos read in this pass of the loop join
            while self._wanted:
                wanted, self._wanted = self._wanted, {}
                try:
                    found = await self._query(list(wanted))
                except BaseException as exc:
                    for future in wanted.values():
                        if future.done():
                            continue
                        if isinstance(exc, Exception):
                            future.set_exception(exc)
                        else:
                            future.cancel()
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for gateway_id, future in wanted.items():
                    if not future.done():
                        future.set_result(found.get(gateway_id))
        finally:
            self._loading = None
            for future in self._wanted.values():  # cancelled on the way out
                future.cancel()
            self._wanted.clear()

    async def _query(self, gateway_ids: list[str]) -> dict[str, Identity]:
        found: dict[str, Identity] = {}
        link = gateway_links
        async with self.store.read() as conn:
            for start in range(0, len(gateway_ids), CHUNK):
                self.queries += 1
                rows = await conn.execute(
                    sa.select(
                        gateways.c.id,
                        gateways.c.hotel_id,
                        gateways.c.public_key,
                        gateways.c.revoked_at,
                        gateways.c.org_id,
                        link.c.last_bulk_seq,
                        link.c.last_priority_seq,
                    )
                    .select_from(gateways.outerjoin(link, link.c.gateway_id == gateways.c.id))
                    .where(gateways.c.id.in_(gateway_ids[start : start + CHUNK]))
                )
                for gateway_id, hotel_id, key, revoked_at, org_id, bulk, priority in rows:
                    lanes = None if bulk is None else {BULK: int(bulk), PRIORITY: int(priority)}
                    found[gateway_id] = Identity(
                        gateway_id, hotel_id, revoked_at is None, _key(bytes(key)), lanes, org_id
                    )
        return found
