"""Login throttling: the window core, the in-process limiter and the Redis one."""

from __future__ import annotations

import os

import pytest
from bellhop_cloud.errors import StoreUnavailable
from bellhop_cloud.ratelimit import Limit, MemoryRateLimiter, RedisRateLimiter, WindowCounter

LIMIT = Limit(count=3, window_s=10.0)


def test_window_counts_then_refuses_until_it_rolls_over() -> None:
    counter = WindowCounter()
    assert [counter.hit("k", LIMIT, now=100.0) for _ in range(3)] == [None, None, None]
    assert counter.blocked("k", LIMIT, now=101.0) == pytest.approx(9.0)
    assert counter.hit("k", LIMIT, now=105.0) == pytest.approx(5.0)
    assert counter.blocked("other", LIMIT, now=105.0) is None
    assert counter.hit("k", LIMIT, now=110.0) is None  # a new window


def test_reset_forgets_a_key() -> None:
    counter = WindowCounter()
    for _ in range(3):
        counter.hit("k", LIMIT, now=0.0)
    counter.reset("k")
    assert counter.blocked("k", LIMIT, now=0.0) is None


def test_a_flood_of_keys_stays_bounded() -> None:
    counter = WindowCounter(max_keys=100)
    for n in range(1000):
        counter.hit(f"k{n}", LIMIT, now=float(n))
    assert len(counter._windows) <= 100


async def test_memory_limiter() -> None:
    limiter = MemoryRateLimiter()
    for _ in range(3):
        assert await limiter.hit("a", LIMIT) is None
    assert await limiter.blocked("a", LIMIT) is not None
    await limiter.reset("a")
    assert await limiter.blocked("a", LIMIT) is None


@pytest.mark.redis
async def test_redis_limiter_shares_counts_between_instances(test_name: str) -> None:
    url = os.environ.get("BELLHOP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if os.environ.get("BELLHOP_TEST_NO_REDIS") == "1" and os.environ.get("CI") != "true":
        pytest.skip("scripts/check could not start Redis (BELLHOP_TEST_NO_REDIS=1)")
    prefix = f"bellhop-test:{test_name}:"
    first = RedisRateLimiter.from_url(url, timeout_s=1.0, prefix=prefix)
    second = RedisRateLimiter.from_url(url, timeout_s=1.0, prefix=prefix)
    try:
        try:
            await first.reset("acct")
        except StoreUnavailable as exc:
            if os.environ.get("CI") == "true":
                pytest.fail(f"Redis is required in CI: {exc}")
            pytest.skip(f"Redis not reachable at {url}")
        assert await first.hit("acct", LIMIT) is None
        assert await second.hit("acct", LIMIT) is None
        assert await first.blocked("acct", LIMIT) is None
        assert await second.hit("acct", LIMIT) is None
        wait = await first.blocked("acct", LIMIT)
        assert wait is not None
        assert 0 < wait <= LIMIT.window_s
        assert await first.hit("acct", LIMIT) is not None
        await second.reset("acct")
        assert await first.blocked("acct", LIMIT) is None
    finally:
        await first.close()
        await second.close()


async def test_unreachable_redis_is_a_clear_error() -> None:
    limiter = RedisRateLimiter.from_url("redis://127.0.0.1:1/0", timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            await limiter.hit("k", LIMIT)
    finally:
        await limiter.close()
