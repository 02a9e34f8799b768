"""The running relay's services, opened once from the configuration and closed on shutdown."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bellhop_cloud import hotels
from bellhop_cloud.accounts import Accounts
from bellhop_cloud.auth.keys import load_or_create_signing_key
from bellhop_cloud.auth.sessions import Sessions
from bellhop_cloud.auth.tokens import AccessTokens
from bellhop_cloud.bridge.downlink import Downlink
from bellhop_cloud.bus import Bus, bus_for
from bellhop_cloud.coalesce import Coalesced
from bellhop_cloud.config import RateLimitBackend, RelayConfig
from bellhop_cloud.db.reads import DeviceReader, open_device_reader
from bellhop_cloud.db.store import Store, utcnow
from bellhop_cloud.errors import ConfigError
from bellhop_cloud.hotels import Hotel
from bellhop_cloud.live import LiveEvents
from bellhop_cloud.metrics import RelayMetrics
from bellhop_cloud.passwords import Passwords
from bellhop_cloud.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from bellhop_cloud.rbac.cache import AccessCache
from bellhop_cloud.rbac.permissions import Access


@dataclass(frozen=True, slots=True)
class Relay:
    config: RelayConfig
    store: Store
    tokens: AccessTokens
    limiter: RateLimiter
    metrics: RelayMetrics
    accounts: Accounts
    sessions: Sessions
    devices: DeviceReader
    access_cache: AccessCache[tuple[Hotel, Access]]
    live: LiveEvents
    bus: Bus
    downlink: Downlink
    _lookups: Coalesced[tuple[str, str], tuple[Hotel, Access]] = field(default_factory=Coalesced)

    @classmethod
    async def open(
        cls,
        config: RelayConfig,
        *,
        limiter: RateLimiter | None = None,
        metrics: RelayMetrics | None = None,
    ) -> Relay:
        """Load the key, connect and (if configured) migrate the database."""
        key = load_or_create_signing_key(config.signing_key_path)
        tokens = AccessTokens(
            key,
            issuer=config.issuer,
            audience=config.audience,
            ttl_s=config.access_token_ttl_s,
        )
        if limiter is None:
            limiter = _limiter(config)
        store = Store.open(config)
        try:
            if config.migrate_on_start:
                await store.migrate()
        except BaseException:
            await store.close()
            await limiter.close()
            raise
        live = LiveEvents.from_config(config, store=store)
        bus = bus_for(config)
        downlink = Downlink(store, bus)  # its handlers are on the bus before it starts
        try:
            await live.start()
            await bus.start()
        except BaseException:
            await live.close()
            await bus.close()
            await store.close()
            await limiter.close()
            raise
        metrics = metrics or RelayMetrics()
        sessions = Sessions(store, cache_s=config.session_cache_s)
        accounts = Accounts(
            config,
            store=store,
            passwords=Passwords.from_config(config),
            tokens=tokens,
            sessions=sessions,
            limiter=limiter,
            metrics=metrics,
        )
        return cls(
            config,
            store,
            tokens,
            limiter,
            metrics,
            accounts,
            sessions,
            open_device_reader(config),
            AccessCache(config.access_cache_s),
            live,
            bus,
            downlink,
        )

    async def hotel_access(self, user_id: str, hotel_id: str) -> tuple[Hotel, Access]:
        """`hotels.access`, reused for up to `access_cache_s` (see rbac/cache.py).

        Concurrent misses for one key share one query, so a dashboard's burst
        does not turn into a burst of identical lookups when an entry expires.
        """
        now = time.monotonic()
        cached = self.access_cache.get(user_id, hotel_id, now)
        if cached is not None:
            return cached
        return await self._lookups.run(
            (user_id, hotel_id), lambda: self._lookup_access(user_id, hotel_id, now)
        )

    async def _lookup_access(self, user_id: str, hotel_id: str, now: float) -> tuple[Hotel, Access]:
        async with self.store.read() as conn:
            found = await hotels.access(conn, user_id, hotel_id)
        expiries = [g.expires_at for g in found[1].grants if g.expires_at is not None]
        self.access_cache.put(
            user_id,
            hotel_id,
            found,
            now,
            first_expiry=min(expiries, default=None),
            wall_now=utcnow(),
        )
        return found

    async def close(self) -> None:
        self._lookups.cancel_all()
        try:
            await self.live.close()
            await self.bus.close()
            await self.limiter.close()
            await self.devices.close()
        finally:
            await self.store.close()


def _limiter(config: RelayConfig) -> RateLimiter:
    if config.rate_limit_backend is RateLimitBackend.MEMORY:
        return MemoryRateLimiter()
    if not config.redis_url:
        raise ConfigError("rate_limit_backend=redis needs redis_url")
    return RedisRateLimiter.from_url(config.redis_url, timeout_s=config.redis_timeout_s)
