"""Delivery guarantees of sortie_core.broker against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.redis import RedisBroker
from pydantic import BaseModel
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Consumers, Delivery, Subscription, publish
from sortie_core.events import DeadLettered, LogoutRequested, Subject
from sortie_testkit.waiting import wait_until_async

STREAM = streams.LOGOUT_REQUESTED
GROUP = "test-group"


def logout(**kw: object) -> LogoutRequested:
    return LogoutRequested(
        request_id=uuid.uuid4(),
        subject=Subject(user_id="alice"),
        deadline=datetime.now(UTC) + timedelta(seconds=30),
        **kw,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def running(
    url: str,
    handler: Callable[[LogoutRequested, Delivery], Awaitable[None]],
    *,
    consumer: str = "c1",
    max_deliveries: int = 5,
    on_deadletter: Callable[[object, DeadLettered], BaseModel | None] | None = None,
    claim_idle_ms: int = 200,
    concurrency: int = 32,
    **sub_kw: Any,
) -> AsyncIterator[Consumers]:
    redis = Redis.from_url(url)
    broker = RedisBroker(url)
    consumers = Consumers(
        broker=broker,
        redis=redis,
        consumer=consumer,
        subscriptions=[
            Subscription(STREAM, GROUP, handler, (LogoutRequested,), on_deadletter, **sub_kw)
        ],
        max_deliveries=max_deliveries,
        claim_idle_ms=claim_idle_ms,
        claim_interval_ms=50,
        polling_interval_ms=10,
        graceful_timeout_s=2,
        concurrency=concurrency,
    )
    await consumers.start()
    await broker.start()
    try:
        yield consumers
    finally:
        await broker.stop()
        await consumers.stop()
        await redis.aclose()


async def test_entries_published_before_the_group_existed_are_delivered(redis, redis_server):
    early = logout()
    await publish(redis, STREAM, early)  # the stream exists, the group does not yet
    seen: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        seen.append(event.event_id)

    async with running(redis_server.url, handler):
        late = logout()
        await publish(redis, STREAM, late)
        await wait_until_async(lambda: len(seen) == 2)
    # Both, once each; handled concurrently, so in either order.
    assert sorted(map(str, seen)) == sorted(map(str, [early.event_id, late.event_id]))
    assert (await redis.xpending(STREAM, GROUP))["pending"] == 0


async def test_duplicate_event_ids_are_handled_once(redis, redis_server):
    seen: list[uuid.UUID] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        seen.append(event.event_id)

    event = logout()
    async with running(redis_server.url, handler):
        await publish(redis, STREAM, event)
        await wait_until_async(lambda: len(seen) == 1)
        await publish(redis, STREAM, event)
        await wait_until_async(lambda: _pending_is(redis, 0))
        # A later event is handled: the copy before it was processed, and not handled.
        marker = logout()
        await publish(redis, STREAM, marker)
        await wait_until_async(lambda: len(seen) == 2)
    assert seen == [event.event_id, marker.event_id]


async def _pending_is(redis: Redis, n: int) -> bool:
    return int((await redis.xpending(STREAM, GROUP))["pending"]) == n


async def test_invalid_message_is_dead_lettered_with_its_reason(redis, redis_server):
    calls: list[object] = []

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        calls.append(event)

    async with running(redis_server.url, handler):
        await redis.xadd(
            STREAM, {"type": "logout.requested", "data": '{"type": "logout.requested"}'}
        )
        await redis.xadd(STREAM, {"type": "junk", "data": "not json"})
        await wait_until_async(lambda: _dl_len(redis, 2))
    assert calls == []
    entries = await redis.xrange(streams.DEADLETTER)
    records = [DeadLettered.model_validate_json(e[1][b"data"]) for e in entries]
    assert {r.reason for r in records} == {"invalid_message"}
    assert "request_id" in records[0].detail
    assert await _pending_is(redis, 0)


async def _dl_len(redis: Redis, n: int) -> bool:
    return await redis.exists(streams.DEADLETTER) and int(await redis.xlen(streams.DEADLETTER)) >= n


async def test_an_entry_that_always_fails_goes_to_deadletter_after_the_limit(redis, redis_server):
    attempts: list[int] = []
    hooked: list[tuple[object, DeadLettered]] = []

    async def handler(event: LogoutRequested, delivery: Delivery) -> None:
        attempts.append(delivery.deliveries)
        raise RuntimeError("boom")

    def hook(event: object, record: DeadLettered) -> None:
        hooked.append((event, record))

    event = logout()
    async with running(redis_server.url, handler, max_deliveries=3, on_deadletter=hook):
        await publish(redis, STREAM, event)
        await wait_until_async(lambda: _dl_len(redis, 1))
    assert attempts == [1, 2, 3]
    assert len(hooked) == 1
    assert isinstance(hooked[0][0], LogoutRequested) and hooked[0][0].event_id == event.event_id
    record = hooked[0][1]
    assert record.reason == "max_deliveries" and record.deliveries == 4
    assert json.loads(record.data)["event_id"] == str(event.event_id)
    assert await _pending_is(redis, 0)


async def test_a_killed_consumer_does_not_lose_its_entry(redis, redis_server):
    """A worker process dies (SIGKILL) holding an entry; a live consumer claims it."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("consumer_proc.py")),
            redis_server.url,
            STREAM,
            GROUP,
            "doomed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).parents[2],
    )
    try:
        event = logout()
        # Create the group the same way the worker does, then publish.
        await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        await publish(redis, STREAM, event)
        assert proc.stdout is not None
        stdout = proc.stdout

        def holding_line() -> str:
            while True:
                line = stdout.readline().decode()
                if not line or line.startswith("holding"):
                    return line

        line = await asyncio.wait_for(asyncio.to_thread(holding_line), 20)
        assert str(event.event_id) in line
        pending = await redis.xpending_range(STREAM, GROUP, "-", "+", 10)
        assert [p["consumer"] for p in pending] == [b"doomed"]
    finally:
        proc.kill()
        proc.wait()
    handled: list[uuid.UUID] = []

    async def handler(ev: LogoutRequested, _d: Delivery) -> None:
        handled.append(ev.event_id)

    async with running(redis_server.url, handler, consumer="survivor"):
        await wait_until_async(lambda: len(handled) == 1)
        await wait_until_async(lambda: _pending_is(redis, 0))
    assert handled == [event.event_id]


@pytest.mark.parametrize("concurrency", [4])
async def test_one_slow_entry_does_not_block_the_next(redis, redis_server, concurrency):
    done: list[str] = []
    release = asyncio.Event()

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        if event.reason == "slow":
            await release.wait()
        done.append(event.reason)

    async with running(redis_server.url, handler):
        await publish(redis, STREAM, logout(reason="slow"))
        await publish(redis, STREAM, logout(reason="fast"))
        await wait_until_async(lambda: done == ["fast"])
        release.set()
        await wait_until_async(lambda: len(done) == 2)
    assert done == ["fast", "slow"]


async def test_dead_consumer_names_are_removed_but_not_ones_holding_entries(redis, redis_server):
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await publish(redis, STREAM, logout())
    await publish(redis, STREAM, logout())
    # "gone-clean" read and acknowledged its entry; "gone-holding" still holds one.
    got = await redis.xreadgroup(GROUP, "gone-clean", {STREAM: ">"}, count=1)
    await redis.xack(STREAM, GROUP, got[0][1][0][0])
    await redis.xreadgroup(GROUP, "gone-holding", {STREAM: ">"}, count=1)
    await asyncio.sleep(0.05)

    async def handler(event: LogoutRequested, _d: Delivery) -> None:
        raise AssertionError("nothing new to handle")

    async def reads() -> int:
        stats: dict[str, Any] = await redis.info("commandstats")
        return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))

    reads_before = await reads()
    # A huge claim idle time keeps the held entry with "gone-holding".
    async with running(
        redis_server.url, handler, consumer="alive", claim_idle_ms=10_000_000
    ) as consumers:

        async def alive_polled() -> bool:
            return await reads() >= reads_before + 2

        await wait_until_async(alive_polled, what='"alive" reading the group')
        before = {c["name"].decode() for c in await redis.xinfo_consumers(STREAM, GROUP)}
        assert {"gone-clean", "gone-holding"} <= before
        consumers.consumer_expiry_s = 0.01
        consumers.janitor_interval_s = 0.0
        removed = await consumers._expire_consumers()
    names = {c["name"].decode() for c in await redis.xinfo_consumers(STREAM, GROUP)}
    assert removed == 1
    assert "gone-clean" not in names
    assert "gone-holding" in names
