"""`running(...)`: a process's lifecycle; an idle reader blocks quietly."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, Subscription, publish
from sortie_core.events import LogoutRequested
from sortie_core.runtime import WorkerParts, running
from sortie_core.settings import ServiceSettings
from sortie_testkit.waiting import wait_until_async
from sortie_workstation.settings import AgentSettings

from .test_broker import logout


async def _xreadgroup_calls(redis: Redis) -> int:
    stats: dict[str, Any] = await redis.info("commandstats")
    return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))


async def test_an_idle_agent_blocks_without_fetch_errors_or_back_off(
    redis: Redis, redis_server
) -> None:
    """An agent's reader blocks `polling_interval_ms` (5 s), as long as redis-py's default
    socket timeout: over a few whole block cycles no read may time out ("Message fetch
    error ... Timeout reading", then FastStream's 5 s back-off), and a command sent after
    them is handled at once."""
    handled: list[float] = []

    async def build(_broker: RedisBroker, _redis: Redis) -> WorkerParts:
        async def on(event: LogoutRequested, _d: Delivery) -> None:
            handled.append(time.monotonic())

        return WorkerParts([Subscription(streams.LOGOUT_REQUESTED, "idle", on, (LogoutRequested,))])

    block_ms = AgentSettings.model_fields["polling_interval_ms"].default
    settings = ServiceSettings(
        redis_url=redis_server.url,
        consumer_name=f"idle-{uuid.uuid4().hex[:6]}",
        polling_interval_ms=block_ms,
    )
    errors: list[logging.LogRecord] = []
    # FastStream's logger does not propagate to the root logger: listen on it directly.
    listener = logging.Handler(logging.ERROR)
    listener.emit = errors.append  # type: ignore[method-assign]
    logging.getLogger("faststream").addHandler(listener)
    async with running("idle-test", settings, build) as proc:
        first = await _xreadgroup_calls(redis)
        started = time.monotonic()

        # Three more reads: at least two blocks ran to their end with nothing to read. A
        # read that timed out costs its 5 s back-off on top: three would not fit in time.
        async def three_more_reads() -> bool:
            return await _xreadgroup_calls(redis) >= first + 3

        await wait_until_async(three_more_reads, 3.5 * block_ms / 1000, 0.1, "three reads")
        idle_s = time.monotonic() - started
        sent = time.monotonic()
        await publish(redis, streams.LOGOUT_REQUESTED, logout())
        await wait_until_async(lambda: bool(handled), 12, what="the command handled")
        assert proc.consumers.healthy()
    assert await _xreadgroup_calls(redis) >= first + 3
    assert idle_s >= 2 * block_ms / 1000 * 0.9  # whole blocks, not failed reads
    assert handled and handled[0] - sent < 1.0
    logging.getLogger("faststream").removeHandler(listener)
    assert not [r for r in errors if "fetch error" in r.getMessage()]


async def test_messages_reach_the_handler_without_a_thread_hop(
    redis: Redis, redis_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastStream resolved the injected message parameter in the thread pool, once per
    message; the path's batch handler takes the raw batch and is called in the loop."""
    import anyio.to_thread

    hops: list[object] = []
    real = anyio.to_thread.run_sync

    async def counting(func: object, *args: object, **kw: object) -> object:
        hops.append(func)
        return await real(func, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    handled: list[object] = []

    async def build(_broker: RedisBroker, _redis: Redis) -> WorkerParts:
        async def on(event: LogoutRequested, _d: Delivery) -> None:
            handled.append(event)

        return WorkerParts([Subscription(streams.LOGOUT_REQUESTED, "hops", on, (LogoutRequested,))])

    settings = ServiceSettings(
        redis_url=redis_server.url, consumer_name="hops", polling_interval_ms=20
    )
    async with running("hops-test", settings, build):
        for _ in range(20):
            await publish(redis, streams.LOGOUT_REQUESTED, logout())
        await wait_until_async(lambda: len(handled) == 20, what="20 handled")
    assert hops == []
