"""`running(...)`: a process's lifecycle; an idle reader blocks quietly."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import pytest
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import Delivery, Subscription, publish
from sortie_core.events import LogoutRequested
from sortie_core.runtime import WorkerParts, running
from sortie_core.settings import ServiceSettings

from .test_broker import logout


async def test_an_idle_reader_blocks_without_fetch_errors_or_back_off(
    redis: Redis, redis_server, caplog: pytest.LogCaptureFixture
) -> None:
    """XREADGROUP blocks 5 s (an idle agent's setting), as long as redis-py's default
    socket timeout: the read must not time out, and a command after it is not late."""
    handled: list[float] = []

    async def build(_broker: RedisBroker, _redis: Redis) -> WorkerParts:
        async def on(event: LogoutRequested, _d: Delivery) -> None:
            handled.append(time.monotonic())

        return WorkerParts([Subscription(streams.LOGOUT_REQUESTED, "idle", on, (LogoutRequested,))])

    settings = ServiceSettings(
        redis_url=redis_server.url,
        consumer_name=f"idle-{uuid.uuid4().hex[:6]}",
        polling_interval_ms=5_000,
    )
    caplog.set_level(logging.ERROR)
    async with running("idle-test", settings, build) as proc:
        await asyncio.sleep(5.6)  # one whole idle block, and then some
        sent = time.monotonic()
        await publish(redis, streams.LOGOUT_REQUESTED, logout())
        while not handled and time.monotonic() - sent < 12:
            await asyncio.sleep(0.02)
        assert proc.consumers.healthy()
    assert handled and handled[0] - sent < 1.0
    assert not [r for r in caplog.records if "fetch error" in r.getMessage()]


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
        while len(handled) < 20:
            await asyncio.sleep(0.02)
    assert hops == []
