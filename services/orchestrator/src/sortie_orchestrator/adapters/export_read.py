"""Reading the requests of a period for the audit export, a page at a time (one ZRANGE
and one pipeline of HGETs per page), so the first rows can go out before the last are read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from sortie_orchestrator.adapters import doc_codec
from sortie_orchestrator.adapters.saga_store import REQUESTS, req_key
from sortie_orchestrator.saga import SagaState

PAGE = 200


def _micros(dt: datetime) -> int:
    return int(dt.timestamp() * 1_000_000)


async def states_between(
    redis: Redis, since: datetime, until: datetime, page: int = PAGE
) -> AsyncIterator[SagaState]:
    """Requests created in [since, until), oldest first; expired ones are left out."""
    low, high = _micros(since), _micros(until)
    offset = 0
    while True:
        ids: list[Any] = await redis.zrangebyscore(REQUESTS, low, f"({high}", offset, page)
        if not ids:
            return
        offset += len(ids)
        async with redis.pipeline(transaction=False) as pipe:
            for rid in ids:
                pipe.hget(req_key(rid.decode() if isinstance(rid, bytes) else rid), "doc")
            docs = await pipe.execute()
        for doc in docs:
            if doc is not None:
                yield doc_codec.decode(doc)
        if len(ids) < page:
            return
