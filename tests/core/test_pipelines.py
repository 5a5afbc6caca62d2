"""`pipelined` on a real redis-server: every item gets the replies of its own commands, in
order, across chunks, and nothing is sent twice."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from sortie_core.pipelines import pipelined


async def test_each_item_gets_its_replies_across_chunks(redis: Redis) -> None:
    keys = [f"k{i}" for i in range(1203)]
    await redis.mset({k: str(i) for i, k in enumerate(keys) if i % 2 == 0})

    def queue(pipe: Pipeline, key: str) -> None:
        pipe.get(key)
        pipe.exists(key)

    before = (await redis.info("stats"))["total_commands_processed"]
    seen = [(key, replies) async for key, replies in pipelined(redis, keys, queue, chunk=500)]
    after = (await redis.info("stats"))["total_commands_processed"]
    assert [k for k, _ in seen] == keys
    assert seen[0] == ("k0", [b"0", 1]) and seen[1201] == ("k1201", [None, 0])
    assert seen[1202] == ("k1202", [b"1202", 1])
    assert after - before == 2 * len(keys) + 1  # + the first INFO


async def test_a_failed_command_is_its_items_reply_when_asked(redis: Redis) -> None:
    await redis.set("plain", "x")
    items = ["plain", "missing"]
    got = [
        (stream, replies)
        async for stream, replies in pipelined(
            redis, items, lambda pipe, key: pipe.xinfo_groups(key), raise_on_error=False
        )
    ]
    assert [s for s, _ in got] == items
    assert all(isinstance(r[0], Exception) for _, r in got)
    assert [x async for x in pipelined(redis, [], lambda pipe, key: pipe.get(key))] == []
