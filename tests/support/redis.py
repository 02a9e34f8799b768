"""The machine's Redis for tests: where it is, and a missing one's verdict."""

from __future__ import annotations

import os
from typing import Final

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["REDIS_URL", "require_redis"]

REDIS_URL: Final = os.environ.get("BELLHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


async def require_redis() -> None:
    """Redis answers; with CI=true a missing one fails the test, elsewhere it skips."""
    client = Redis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        await client.ping()
    except (OSError, RedisError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not reachable at {REDIS_URL} ({exc})")
    finally:
        await client.aclose()
