"""Many small Redis reads in few round trips: one pipeline per `chunk` items, so that a
fleet of thousands of hosts never becomes one huge reply held in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

T = TypeVar("T")
CHUNK = 500


async def pipelined(
    redis: Redis,
    items: Sequence[T],
    queue: Callable[[Pipeline, T], object],
    *,
    chunk: int = CHUNK,
    raise_on_error: bool = True,
) -> AsyncIterator[tuple[T, list[Any]]]:
    """Each item with the replies of the commands `queue(pipe, item)` queued for it, in
    order. `raise_on_error=False`: a failed command's reply is its exception."""
    for start in range(0, len(items), chunk):
        part = items[start : start + chunk]
        counts: list[int] = []
        async with redis.pipeline(transaction=False) as pipe:
            for item in part:
                before = len(pipe)
                queue(pipe, item)
                counts.append(len(pipe) - before)
            replies = await pipe.execute(raise_on_error=raise_on_error)
        at = 0
        for item, count in zip(part, counts, strict=True):
            yield item, replies[at : at + count]
            at += count
