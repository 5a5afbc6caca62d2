"""Stream retention. Acknowledged entries stay in a stream until trimmed, and `MAXLEN ~`
could drop entries that are still pending (XTRIM ignores consumer groups:
https://redis.io/docs/latest/commands/xtrim/). This trims by MINID below the
oldest entry any consumer group still needs, and never newer than the retention window,
so nothing accepted is lost and `request.finished` stays readable for auditors a while.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def safe_min_id(redis: Redis, stream: str) -> str | None:
    """The smallest id some group still needs (pending or not yet delivered); None when
    the stream has no group, in which case only the retention window applies."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    if not groups:
        return None
    needed: list[tuple[int, int]] = []
    for group in groups:
        name = _s(group["name"])
        if int(group.get("pending", 0)):
            summary = await redis.xpending(stream, name)
            needed.append(_id_tuple(_s(summary["min"])))
        last = _id_tuple(_s(group["last-delivered-id"]))
        # Everything after the last delivered id is still to be read by this group.
        needed.append((last[0], last[1] + 1))
    low = min(needed)
    return f"{low[0]}-{low[1]}"


async def trim_stream(redis: Redis, stream: str, retention_s: float) -> int:
    """Drop entries older than the retention window that no group still needs."""
    cutoff = (int((time.time() - retention_s) * 1000), 0)
    floor = await safe_min_id(redis, stream)
    target = cutoff if floor is None else min(cutoff, _id_tuple(floor))
    # Exact trimming: `~` only drops whole radix-tree nodes, i.e. nothing on a small stream.
    minid = f"{target[0]}-{target[1]}"
    return int(await redis.xtrim(stream, minid=minid, approximate=False))
