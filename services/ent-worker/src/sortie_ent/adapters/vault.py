"""`TicketVault` on Redis: the request's kept tickets under the ent-worker's own
`sortie:cred:{<request id>}:kept` key (sortie_core.credentials), expiring after the
follow-up horizon."""

from __future__ import annotations

from redis.asyncio import Redis

from sortie_core.credentials import load_kept_tickets, store_kept_tickets
from sortie_core.events import ServiceTicket


class RedisTicketVault:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s

    async def kept(self, request_id: str) -> tuple[ServiceTicket, ...]:
        return await load_kept_tickets(self.redis, request_id)

    async def keep(self, request_id: str, tickets: tuple[ServiceTicket, ...]) -> None:
        await store_kept_tickets(self.redis, request_id, tickets, self.ttl_s)
