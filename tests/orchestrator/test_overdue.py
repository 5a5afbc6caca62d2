"""sortie_requests_overdue: the orchestrator's sweeper counts deadlines left unfired past
a grace period, which is what SortieRequestsStuck pages on."""

from __future__ import annotations

import time

import httpx
from redis.asyncio import Redis

from sortie_orchestrator.adapters.saga_store import DEADLINES
from sortie_orchestrator.app import OVERDUE_GRACE_S, background, create_app
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until_async
from tests.orchestrator.conftest import settings_for


async def overdue(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    line = next(ln for ln in text.splitlines() if ln.startswith("sortie_requests_overdue "))
    return float(line.split()[1])


async def wait_for(client: httpx.AsyncClient, value: float) -> None:
    async def reached() -> bool:
        return await overdue(client) == value

    await wait_until_async(reached, 10, 0.05, f"sortie_requests_overdue == {value}")


async def test_overdue_gauge_counts_deadlines_nobody_fired(
    redis: Redis, redis_server: RedisServer
) -> None:
    # A deadline loop that polls once at start and then sleeps for ten minutes: the
    # situation the gauge exists to reveal.
    settings = settings_for(redis_server, deadline_poll_ms=600_000, sweep_interval_s=0.05)
    app = create_app(settings)
    # The loop's one poll removes this deadline of a request that does not exist.
    await redis.zadd(DEADLINES, {"first-poll-probe": time.time() - 3600})
    async with background(app.state.wiring):

        async def polled() -> bool:
            return await redis.zscore(DEADLINES, "first-poll-probe") is None

        await wait_until_async(polled, 10, what="the deadline loop's poll")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as client:
            await wait_for(client, 0)
            now = time.time()
            await redis.zadd(
                DEADLINES,
                {
                    "overdue-1": now - OVERDUE_GRACE_S - 60,
                    "overdue-2": now - OVERDUE_GRACE_S - 1,
                    "within-grace": now - OVERDUE_GRACE_S + 20,
                    "future": now + 60,
                },
            )
            await wait_for(client, 2)
            await redis.zrem(DEADLINES, "overdue-1", "overdue-2")
            await wait_for(client, 0)
