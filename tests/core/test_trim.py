"""Trimming never drops an entry a consumer group still needs."""

from __future__ import annotations

import asyncio

from sortie_core.trim import trim_stream


async def test_trim_keeps_pending_and_undelivered_entries(redis):
    ids = [await redis.xadd("s", {"n": str(i)}) for i in range(6)]
    await redis.xgroup_create("s", "g", id="0")
    # The group reads four entries and acknowledges the first two.
    read = await redis.xreadgroup("g", "c", {"s": ">"}, count=4)
    assert len(read[0][1]) == 4
    await redis.xack("s", "g", ids[0], ids[1])
    await asyncio.sleep(0.01)
    removed = await trim_stream(redis, "s", retention_s=0)
    assert removed == 2
    remaining = [e[0] for e in await redis.xrange("s")]
    assert remaining == ids[2:]  # 2 and 3 pending, 4 and 5 never delivered


async def test_trim_respects_the_retention_window(redis):
    for i in range(3):
        await redis.xadd("t", {"n": str(i)})
    assert await trim_stream(redis, "t", retention_s=3600) == 0
    assert await redis.xlen("t") == 3
    await asyncio.sleep(0.01)  # MINID keeps ids of the current millisecond
    assert await trim_stream(redis, "t", retention_s=0) == 3


async def test_trim_with_two_groups_keeps_what_the_slower_needs(redis):
    ids = [await redis.xadd("u", {"n": str(i)}) for i in range(4)]
    await redis.xgroup_create("u", "fast", id="0")
    await redis.xgroup_create("u", "slow", id="0")
    await redis.xreadgroup("fast", "c", {"u": ">"}, count=4)
    await redis.xack("u", "fast", *ids)
    await redis.xreadgroup("slow", "c", {"u": ">"}, count=1)
    await redis.xack("u", "slow", ids[0])
    await asyncio.sleep(0.01)
    assert await trim_stream(redis, "u", retention_s=0) == 1
    assert [e[0] for e in await redis.xrange("u")] == ids[1:]
