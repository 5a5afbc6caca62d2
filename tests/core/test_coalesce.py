"""Group commit (sortie_core.coalesce) on a real redis-server: callers at the same moment
share round trips, each gets its own replies, a lone caller is sent at once, and one
refused caller fails alone without running anyone's commands twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from sortie_core.coalesce import Coalescer, coalescer_for


async def test_callers_at_once_share_round_trips_and_get_their_own_replies(redis: Redis) -> None:
    trips = Coalescer(redis)

    async def one(i: int) -> list[Any]:
        return await trips.run(lambda pipe: (pipe.incrby(f"k{i}", i), pipe.get(f"k{i}")))

    replies = await asyncio.gather(*(one(i) for i in range(100)))
    assert replies == [[i, str(i).encode()] for i in range(100)]
    # The first caller is sent alone; the 99 that queued meanwhile share what follows.
    assert trips.callers == 100
    assert trips.flushes <= 3


async def test_a_lone_caller_is_sent_at_once(redis: Redis) -> None:
    trips = Coalescer(redis)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await trips.run(lambda pipe: pipe.ping()) == [True]
    assert trips.flushes == 1
    # No batching timer: one local round trip, far below any wait a timer would add.
    assert loop.time() - started < 0.05


async def test_an_error_reply_goes_to_its_own_caller_only(redis: Redis) -> None:
    await redis.set("text", "x")
    trips = Coalescer(redis)
    good, bad = await asyncio.gather(
        trips.run(lambda pipe: pipe.incr("n")),
        trips.run(lambda pipe: pipe.incr("text")),  # not an integer: an error reply
    )
    assert good == [1]
    assert isinstance(bad[0], ResponseError)


async def test_atomic_callers_refused_when_queued_fail_alone_and_nothing_runs_twice(
    redis: Redis,
) -> None:
    trips = Coalescer(redis)

    async def good(i: int) -> list[Any]:
        return await trips.atomic(lambda pipe: (pipe.incr(f"c{i}"), pipe.rpush("log", i)))

    async def refused() -> list[Any]:
        # Wrong number of arguments: refused when queued, so Redis aborts the MULTI.
        return await trips.atomic(lambda pipe: pipe.execute_command("SET", "lonely"))

    results = await asyncio.gather(
        *(good(i) for i in range(10)),
        refused(),
        *(good(i) for i in range(10, 20)),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ResponseError)
    for i in range(20):
        assert await redis.get(f"c{i}") == b"1"  # once each, although retried alone
    assert sorted(int(x) for x in await redis.lrange("log", 0, -1)) == list(range(20))  # type: ignore[misc]


async def test_atomic_error_at_exec_time_raises_in_its_caller_only(redis: Redis) -> None:
    await redis.set("text", "x")
    trips = Coalescer(redis)
    results = await asyncio.gather(
        trips.atomic(lambda pipe: pipe.incr("a")),
        trips.atomic(lambda pipe: (pipe.incr("text"), pipe.incr("b"))),
        trips.atomic(lambda pipe: pipe.incr("c")),
        return_exceptions=True,
    )
    assert results[0] == [1] and results[2] == [1]
    assert isinstance(results[1], ResponseError)
    # MULTI does not roll back: the caller's other command ran, once.
    assert await redis.get("b") == b"1"


async def test_a_lost_connection_reaches_every_caller_of_the_flush(redis_server: Any) -> None:
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens
    trips = Coalescer(client)
    results = await asyncio.gather(
        *(trips.run(lambda pipe: pipe.ping()) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    await client.aclose()


async def test_a_cancelled_caller_does_not_strand_the_others(redis: Redis) -> None:
    trips = Coalescer(redis)
    first = asyncio.create_task(trips.run(lambda pipe: pipe.incr("x")))
    waiting = [asyncio.create_task(trips.run(lambda pipe: pipe.incr("x"))) for _ in range(5)]
    waiting[2].cancel()
    done = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert isinstance(done[3], asyncio.CancelledError)
    assert sorted(r[0] for r in done if isinstance(r, list)) == [1, 2, 3, 4, 5]


async def test_one_coalescer_per_client(redis: Redis) -> None:
    assert coalescer_for(redis) is coalescer_for(redis)
    other = Redis.from_url("redis://127.0.0.1:1")
    assert coalescer_for(other) is not coalescer_for(redis)
    await other.aclose()


@pytest.mark.parametrize("atomic", [False, True])
async def test_on_a_cluster_every_caller_runs_alone(cluster_client: Any, atomic: bool) -> None:
    trips = Coalescer(cluster_client)
    send = trips.atomic if atomic else trips.run
    replies = await asyncio.gather(*(send(lambda p, i=i: p.incr(f"n{i}")) for i in range(6)))
    assert replies == [[1]] * 6
    assert trips.flushes == 0  # never a pipeline across slots
