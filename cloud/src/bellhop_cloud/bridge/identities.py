"""Gateways' identities for the handshake: looked up in batches, kept for a few seconds.

    identities = Identities(store, keep_s=5.0)
    identity = await identities.get(gateway_id)    # None: never enrolled
    identity.verify(message, signature)
    identities.forget(revoked_ids)                 # the revocation watcher's finding

Every Hello waiting for its gateway's enrolment at a moment is answered by one
query (`id IN (...)`), so a reconnect storm of thousands of gateways costs a
few queries per second instead of one each. The public key is parsed once per
lookup, not per proof. An identity is reused for `keep_s` (the relay's
`bridge_revocation_check_s`), so a gateway that retries at once costs no query;
a revocation found by the endpoint's watcher is forgotten at once, and a
bridge that opened from a kept identity of a gateway revoked meanwhile is cut
by that same watcher, which checks every live bridge every `keep_s`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bellhop_cloud.db.schema import gateways
from bellhop_cloud.db.store import Store

__all__ = ["Identities", "Identity"]

CHUNK: Final = 500  # ids per IN (...) query


@dataclass(frozen=True, slots=True)
class Identity:
    gateway_id: str
    hotel_id: str
    active: bool
    key: Ed25519PublicKey | None  # None: the stored key is not a valid Ed25519 key

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
    def __init__(self, store: Store, keep_s: float) -> None:
        self.store = store
        self.keep_s = keep_s
        self._kept: dict[str, tuple[float, Identity]] = {}  # id -> (loaded at, identity)
        self._wanted: dict[str, asyncio.Future[Identity | None]] = {}
        self._loading: asyncio.Task[None] | None = None
        self.queries = 0  # for tests and benchmarks

    async def get(self, gateway_id: str) -> Identity | None:
        kept = self._kept.get(gateway_id)
        if kept is not None and time.monotonic() - kept[0] < self.keep_s:
            return kept[1]
        future = self._wanted.get(gateway_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._wanted[gateway_id] = future
            if self._loading is None:
                self._loading = asyncio.create_task(self._load(), name="bridge-identities")
        return await asyncio.shield(future)

    def forget(self, gateway_ids: Iterable[str]) -> None:
        for gateway_id in gateway_ids:
            self._kept.pop(gateway_id, None)

    def prune(self) -> None:
        """Drop identities past their time (memory stays bounded by recent handshakes)."""
        now = time.monotonic()
        stale = [g for g, (at, _) in self._kept.items() if now - at >= self.keep_s]
        for gateway_id in stale:
            del self._kept[gateway_id]

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
                now = time.monotonic()
                for gateway_id, future in wanted.items():
                    identity = found.get(gateway_id)
                    if identity is not None:
                        self._kept[gateway_id] = (now, identity)
                    if not future.done():
                        future.set_result(identity)
        finally:
            self._loading = None
            for future in self._wanted.values():  # cancelled on the way out
                future.cancel()
            self._wanted.clear()

    async def _query(self, gateway_ids: list[str]) -> dict[str, Identity]:
        found: dict[str, Identity] = {}
        async with self.store.read() as conn:
            for start in range(0, len(gateway_ids), CHUNK):
                self.queries += 1
                rows = await conn.execute(
                    sa.select(
                        gateways.c.id,
                        gateways.c.hotel_id,
                        gateways.c.public_key,
                        gateways.c.revoked_at,
                    ).where(gateways.c.id.in_(gateway_ids[start : start + CHUNK]))
                )
                for gateway_id, hotel_id, key, revoked_at in rows:
                    found[gateway_id] = Identity(
                        gateway_id, hotel_id, revoked_at is None, _key(bytes(key))
                    )
        return found
