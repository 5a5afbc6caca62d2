"""The M365 worker's write queue as the orchestrator sees it: how long a Graph write
queued now would wait for the tenant's quota (the worker keeps it in Redis every second
while writes wait, `sortie_core.services.expected_wait_key`; it expires 10 s after the
queue last moved). Shown on a request whose M365 steps are still pending."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sortie_core.services import expected_wait_key


class M365Queue:
    def __init__(self, redis: Redis, tenant_key: str = "default") -> None:
        self.redis = redis
        self.key = expected_wait_key(tenant_key)

    async def expected_wait_s(self) -> float | None:
        """Seconds, or None when no worker said (no queue, or the key expired)."""
        try:
            raw = await self.redis.get(self.key)
        except RedisError:
            return None
        try:
            return float(raw) if raw is not None else None
        except ValueError:
            return None
