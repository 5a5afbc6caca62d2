"""A step whose failure came from Redis itself is retried, not reported as a bug."""

from __future__ import annotations

from redis.asyncio import Redis

from sortie_core.events import Outcome
from sortie_core.ratelimit import RedisRateLimiter
from sortie_core.steps import RetryPolicy, run_step
from sortie_testkit.redis_server import free_port


async def test_a_redis_error_inside_a_step_is_retried_as_transient(redis, redis_server):
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    limiters = [RedisRateLimiter(down, "rl:test", 100.0), RedisRateLimiter(redis, "rl:test", 100.0)]
    tried: list[int] = []

    async def body() -> str:
        limiter = limiters[len(tried)]
        tried.append(1)
        await limiter.acquire()
        return "done"

    try:
        result = await run_step("m365", "revoke_sessions", body, RetryPolicy(base_s=0.01))
    finally:
        await down.aclose()
    assert result.outcome is Outcome.SUCCEEDED
    assert result.attempts == 2


async def test_a_step_gives_up_on_redis_after_its_attempts_as_retryable():
    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    limiter = RedisRateLimiter(down, "rl:test", 100.0)

    async def body() -> None:
        await limiter.acquire()

    try:
        result = await run_step("m365", "block_sign_in", body, RetryPolicy(2, base_s=0.01))
    finally:
        await down.aclose()
    assert result.outcome is Outcome.FAILED and result.error is not None
    assert (result.error.code, result.error.retryable) == ("redis_unavailable", True)
