"""The running relay's services, opened once from the configuration and closed on shutdown."""

from __future__ import annotations

from dataclasses import dataclass

from bellhop_cloud.accounts import Accounts
from bellhop_cloud.auth.keys import load_or_create_signing_key
from bellhop_cloud.auth.tokens import AccessTokens
from bellhop_cloud.config import RateLimitBackend, RelayConfig
from bellhop_cloud.db.store import Store
from bellhop_cloud.errors import ConfigError
from bellhop_cloud.metrics import RelayMetrics
from bellhop_cloud.passwords import Passwords
from bellhop_cloud.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter


@dataclass(frozen=True, slots=True)
class Relay:
    config: RelayConfig
    store: Store
    tokens: AccessTokens
    passwords: Passwords
    limiter: RateLimiter
    metrics: RelayMetrics
    accounts: Accounts

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
        passwords = Passwords.from_config(config)
        metrics = metrics or RelayMetrics()
        accounts = Accounts(
            config,
            store=store,
            passwords=passwords,
            tokens=tokens,
            limiter=limiter,
            metrics=metrics,
        )
        return cls(config, store, tokens, passwords, limiter, metrics, accounts)

    async def close(self) -> None:
        try:
            await self.limiter.close()
        finally:
            await self.store.close()


def _limiter(config: RelayConfig) -> RateLimiter:
    if config.rate_limit_backend is RateLimitBackend.MEMORY:
        return MemoryRateLimiter()
    if not config.redis_url:
        raise ConfigError("rate_limit_backend=redis needs redis_url")
    return RedisRateLimiter.from_url(config.redis_url, timeout_s=config.redis_timeout_s)
