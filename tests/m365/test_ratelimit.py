"""The Redis-shared token bucket on a real redis-server."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from sortie_core.ratelimit import RedisRateLimiter


async def test_burst_then_paced_at_the_rate(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, "rl:test", rate=20, burst=5)
    waits = [await limiter.reserve() for _ in range(10)]
    assert waits[:5] == [0.0] * 5
    # Each reservation past the burst waits one more token's time (50 ms).
    assert all(0.0 < w for w in waits[5:])
    assert waits[5:] == sorted(waits[5:])
    assert waits[-1] == pytest.approx(0.25, abs=0.03)


async def test_replicas_share_one_budget(redis: Redis) -> None:
    """Two limiters (two worker replicas) on one key: together they keep the rate."""
    a = RedisRateLimiter(redis, "rl:tenant", rate=50, burst=1)
    b = RedisRateLimiter(redis, "rl:tenant", rate=50, burst=1)
    started = time.monotonic()
    await asyncio.gather(*(x.acquire() for x in (a, b) for _ in range(15)))
    elapsed = time.monotonic() - started
    # 30 tokens at 50/s with a burst of 1: at least 29/50 s, whoever takes them.
    assert elapsed >= 0.55
    assert elapsed < 2.0
    other = RedisRateLimiter(redis, "rl:other-tenant", rate=50, burst=1)
    assert await other.reserve() == 0.0


async def test_refills_over_time(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis, "rl:refill", rate=100, burst=2)
    assert [await limiter.reserve() for _ in range(2)] == [0.0, 0.0]
    await asyncio.sleep(0.05)
    assert await limiter.reserve() == 0.0
    assert await redis.pttl("rl:refill") > 0  # idle buckets expire


def test_rejects_nonsense(redis: Redis) -> None:
    with pytest.raises(ValueError):
        RedisRateLimiter(redis, "k", rate=0)
    with pytest.raises(ValueError):
        RedisRateLimiter(redis, "k", rate=5, burst=0.5)
