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


# KEYS[1] the tenant's bucket, KEYS[2..] one bucket per application (app registration).
# ARGV tenant rate, tenant burst, app rate, app burst (tokens/s, tokens), want, tenant
# tokens and app tokens that may be reserved ahead (whole tokens, >= 0).
# Grants up to `want` tokens, each from the tenant's bucket and from the application's
# bucket holding the most. A grant may take a token that is not there yet, down to the
# reserve ahead: it is then due when its buckets have refilled to it. So a dispatcher that
# comes back late (a busy event loop) loses nothing of the quota, and a token is still
# never sent before its time. Returns {µs until the next token can be reserved (0 when all
# were granted), then per grant: app index (0-based), µs until it is due}.
_TAKE_SPREAD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rates = {tonumber(ARGV[1]), tonumber(ARGV[3])}
local bursts = {tonumber(ARGV[2]), tonumber(ARGV[4])}
local want = tonumber(ARGV[5])
local floors = {1 - tonumber(ARGV[6]), 1 - tonumber(ARGV[7])}
local tokens = {}
for i = 1, #KEYS do
  local kind = (i == 1) and 1 or 2
  local s = redis.call('HMGET', KEYS[i], 'tokens', 'us')
  local have, at = tonumber(s[1]), tonumber(s[2])
  if have == nil or at == nil then
    have = bursts[kind]
  else
    have = math.min(bursts[kind], have + (now - at) * rates[kind] / 1000000)
  end
  tokens[i] = have
end
local out = {0}
local granted = 0
while granted < want and tokens[1] >= floors[1] do
  local best = 2
  for i = 3, #KEYS do
    if tokens[i] > tokens[best] then best = i end
  end
  if tokens[best] < floors[2] then break end
  tokens[1] = tokens[1] - 1
  tokens[best] = tokens[best] - 1
  local due = math.max(0, -tokens[1] * 1000000 / rates[1], -tokens[best] * 1000000 / rates[2])
  out[#out + 1] = best - 2
  out[#out + 1] = math.ceil(due)
  granted = granted + 1
end
if granted < want then
  local wait = (floors[1] - math.min(floors[1], tokens[1])) * 1000000 / rates[1]
  local app = math.huge
  for i = 2, #KEYS do
    app = math.min(app, (floors[2] - math.min(floors[2], tokens[i])) * 1000000 / rates[2])
  end
  out[1] = math.max(1, math.ceil(math.max(wait, app)))
end
for i = 1, #KEYS do
  local kind = (i == 1) and 1 or 2
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'us', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(bursts[kind] * 1000 / rates[kind]) + 60000)
end
return out
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """A budget of `rate` tokens/s holding at most `burst`."""

    rate: float
    burst: float

    @classmethod
    def for_limit(cls, limit: float, window_s: float, headroom: float = 0.02) -> Bucket:
        """Under `limit` per `window_s` in any window (as Graph counts): the rate is the
        limit's less `headroom`, and the burst (a tenth of a second's worth, at least one
        token) fits in what the headroom leaves."""
        if limit <= 0 or window_s <= 0 or not 0 <= headroom < 1:
            raise ValueError("limit and window must be positive, headroom within [0, 1)")
        rate = limit / window_s * (1 - headroom)
        return cls(rate, max(1.0, rate / 10))


@dataclass
class SpreadLimiter:
    """Tokens from one tenant's bucket and from the least used of several applications'
    buckets, all kept in Redis (shared by every replica): `take(n)` grants up to n at once
    in one call, naming the application of each and when it is due.

    `ahead_s`: how far ahead tokens may be reserved (whole tokens only, so none at a rate
    under 1/ahead_s). A more urgent write asking later waits behind at most that much."""

    redis: Redis
    tenant_key: str
    app_keys: tuple[str, ...]
    tenant: Bucket
    app: Bucket
    ahead_s: float = 0.1
    _script: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.app_keys:
            raise ValueError("at least one application bucket")
        for bucket in (self.tenant, self.app):
            if bucket.rate <= 0 or bucket.burst < 1:
                raise ValueError("a bucket needs a positive rate and room for one token")
        if self.ahead_s < 0:
            raise ValueError("ahead_s cannot be negative")
        self._script = self.redis.register_script(_TAKE_SPREAD)

    @property
    def rate(self) -> float:
        """Tokens per second all applications together can have."""
        return min(self.tenant.rate, self.app.rate * len(self.app_keys))

    async def take(self, want: int = 1) -> tuple[list[tuple[int, float]], float]:
        """(application index, seconds until due) of each token granted (at most `want`),
        and when fewer were, the seconds until the next one can be."""
        ahead = [int(self.tenant.rate * self.ahead_s), int(self.app.rate * self.ahead_s)]
        args = [self.tenant.rate, self.tenant.burst, self.app.rate, self.app.burst, want]
        out = await self._script(  # type: ignore[operator]
            keys=[self.tenant_key, *self.app_keys],
            args=[*(repr(float(a)) for a in args), *(str(n) for n in ahead)],
        )
        pairs = out[1:]
        grants = [(int(pairs[i]), int(pairs[i + 1]) / 1_000_000) for i in range(0, len(pairs), 2)]
        return grants, int(out[0]) / 1_000_000
