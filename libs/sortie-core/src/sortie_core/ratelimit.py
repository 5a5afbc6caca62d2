"""A token bucket kept in Redis, so every replica of a worker shares one budget per tenant.

Microsoft Graph throttles per app and tenant, not per process
(https://learn.microsoft.com/graph/throttling-limits): the budget has to be counted where
all replicas see it. One Lua script refills and takes atomically, using Redis' own clock,
so replicas on machines with drifting clocks still agree.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from redis.asyncio import Redis

# KEYS[1] bucket hash; ARGV rate (tokens/s), burst (tokens), cost.
# Reserves `cost` tokens, letting the balance go below zero: returns the milliseconds until
# the reservation is covered (0: go now). One call per acquisition, however many wait.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
tokens = tokens - cost
local wait = 0
if tokens < 0 then
  wait = math.ceil(-tokens * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)
return wait
"""


@dataclass
class RedisRateLimiter:
    """`await limiter.acquire()` returns when its token is due in the shared bucket.

    `rate` tokens per second, at most `burst` at once (default: one second's worth). Callers
    queue by reservation: the n-th waiter sleeps n/rate seconds, with one Redis call each.
    """

    redis: Redis
    key: str
    rate: float
    burst: float | None = None
    _script: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.burst is None:
            self.burst = max(1.0, self.rate)
        if self.burst < 1:
            raise ValueError("burst must hold at least one token")
        self._script = self.redis.register_script(_TAKE)

    async def reserve(self, cost: float = 1.0) -> float:
        """Reserve `cost` tokens: the seconds until they are due (0.0: now)."""
        wait_ms = await self._script(  # type: ignore[operator]
            keys=[self.key], args=[repr(self.rate), repr(self.burst), repr(cost)]
        )
        return int(wait_ms) / 1000

    async def acquire(self, cost: float = 1.0) -> None:
        wait = await self.reserve(cost)
        if wait > 0:
            await asyncio.sleep(wait)
