"""Whether the session an access token names is still live.

A session is a family of refresh tokens (accounts.py); an access token
carries its family id as `sid`. Logout, refresh-token reuse and a password
change revoke families, and with them every access token issued in them.

Checking the store on every request would cost a query per read, so a live
session is remembered for `session_cache_s` (a revoked one until its tokens
expire). The bound that follows:

- on the relay node that revoked a session, its tokens are refused at once
  (the node forgets the session when the revocation commits);
- on other nodes, reads may accept them for at most `session_cache_s`;
- writes (every method but GET and HEAD) ask the store every time, so no
  node changes anything for an ended session, or a deleted account.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import sqlalchemy as sa

from bellhop_cloud.auth.tokens import Principal
from bellhop_cloud.coalesce import Coalesced
from bellhop_cloud.db.schema import refresh_tokens, users
from bellhop_cloud.db.store import Store
from bellhop_cloud.errors import InvalidToken

_MAX_ENTRIES = 100_000


class Sessions:
    def __init__(self, store: Store, *, cache_s: float, max_entries: int = _MAX_ENTRIES) -> None:
        self._store = store
        self._cache_s = cache_s
        self._max = max_entries
        # Keyed by (session, account): a session is live only for its own account.
        self._live: OrderedDict[tuple[str, str], float] = OrderedDict()  # -> until (monotonic)
        self._ended: OrderedDict[tuple[str, str], float] = OrderedDict()  # -> token expiry
        # Bumped by every local revocation: a lookup that began before one does
        # not remember what it read, which may predate the revocation.
        self._generation = 0
        # Lookups in progress: concurrent misses for one session share one query
        # (a thousand live streams re-checking together must not be a thousand queries).
        self._lookups: Coalesced[tuple[str, str], bool] = Coalesced()

    async def require_live(self, principal: Principal, *, fresh: bool) -> None:
        """Raise InvalidToken unless the principal's session is live (`fresh`: ask the store)."""
        key = (principal.session_id, principal.user_id)
        now = time.monotonic()
        if key in self._ended:
            raise InvalidToken("the session has ended; log in again")
        if not fresh and self._live.get(key, 0.0) > now:
            return
        generation = self._generation
        live = await self._lookups.run(key, lambda: self._lookup(*key))
        if generation == self._generation:
            self._remember(key, principal.expires_at, live, now)
        if not live:
            raise InvalidToken("the session has ended; log in again")

    def ended(self, *session_ids: str) -> None:
        """Forget these sessions now: called when their revocation has committed."""
        self._generation += 1
        ended = set(session_ids)
        # A lookup that began before the revocation is not shared with later callers.
        self._lookups.forget(lambda key: key[0] in ended)
        for key in [key for key in self._live if key[0] in ended]:
            del self._live[key]

    def ended_for_user(self, user_id: str) -> None:
        """Forget every session of `user_id` (a password change ends them all)."""
        self._generation += 1
        self._lookups.forget(lambda key: key[1] == user_id)
        for key in [key for key in self._live if key[1] == user_id]:
            del self._live[key]

    async def _lookup(self, sid: str, user_id: str) -> bool:
        query = (
            sa.select(refresh_tokens.c.family_id)
            .join(users, users.c.id == refresh_tokens.c.user_id)
            .where(
                refresh_tokens.c.family_id == sid,
                refresh_tokens.c.user_id == user_id,
                refresh_tokens.c.revoked_at.is_(None),
            )
            .limit(1)
        )
        async with self._store.read() as conn:
            return (await conn.execute(query)).first() is not None

    def _remember(self, key: tuple[str, str], expires_at: float, live: bool, now: float) -> None:
        if live:
            if self._cache_s > 0:
                self._live[key] = now + self._cache_s
                self._live.move_to_end(key)
                if len(self._live) > self._max:
                    self._live.popitem(last=False)
            return
        # A session never comes back: remember it ended while its tokens can live.
        self._live.pop(key, None)
        self._ended[key] = expires_at
        if len(self._ended) > self._max:
            wall = time.time()
            self._ended = OrderedDict((k, v) for k, v in self._ended.items() if v > wall)
            while len(self._ended) > self._max:
                self._ended.popitem(last=False)
