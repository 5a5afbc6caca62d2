"""What the orchestrator reads of the saga store's indexes beside the store itself: a
deadline to drop, how many are overdue, the request an Idempotency-Key started, and the
requests of a period for the audit export (saga_store.py lays the keys out).

The export reads a page at a time (one ZRANGE and one pipeline of HGETs per page), so the
first rows can go out before the last are read.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from sortie_orchestrator.adapters import doc_codec
from sortie_orchestrator.adapters.saga_store import (
    DEADLINES,
    REQUESTS,
    IdempotencyMismatch,
    idem_key,
    req_key,
)
from sortie_orchestrator.saga import SagaState

PAGE = 200


def _micros(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SagaIndex:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def new_id(self) -> uuid.UUID:
        """A new request's id (on Cluster: in a slot whose outbox the relay polls)."""
        return uuid.uuid4()

    async def discover(self) -> None:
        """Deadlines sets to poll: the one of one Redis (more on Cluster)."""

    async def forget_deadline(self, request_id: str) -> None:
        """Drop a deadline the request no longer has (or a request that expired)."""
        await self.redis.zrem(DEADLINES, request_id)

    async def overdue(self, before: datetime) -> int:
        """How many deadlines fell due before `before` and are still pending."""
        return int(await self.redis.zcount(DEADLINES, "-inf", before.timestamp()))

    async def replayed(
        self, key: str | None, principal: str, fingerprint: str = ""
    ) -> uuid.UUID | None:
        """The request an Idempotency-Key already started (IdempotencyMismatch: for
        another body, `fingerprint`)."""
        if not key:
            return None
        raw = await self.redis.get(idem_key(key, principal))
        if raw is None:
            return None
        rid, _, first = _text(raw).partition(" ")
        if fingerprint and first and first != fingerprint:
            raise IdempotencyMismatch(rid)
        return uuid.UUID(rid)

    async def between(
        self, since: datetime, until: datetime, page: int = PAGE
    ) -> AsyncIterator[SagaState]:
        """Requests created in [since, until), oldest first; expired ones are left out."""
        low, high = _micros(since), _micros(until)
        offset = 0
        while True:
            ids: list[Any] = await self.redis.zrangebyscore(REQUESTS, low, f"({high}", offset, page)
            if not ids:
                return
            offset += len(ids)
            async with self.redis.pipeline(transaction=False) as pipe:
                for rid in ids:
                    pipe.hget(req_key(_text(rid)), "doc")
                docs = await pipe.execute()
            for doc in docs:
                if doc is not None:
                    yield doc_codec.decode(doc)
            if len(ids) < page:
                return
