"""While Redis is unreachable or saturated the intake answers 503 problem+json with
Retry-After, never 500, and keeps nothing half-written; /readyz sees stopped subscribers."""

from __future__ import annotations

import asyncio

import httpx
from redis.asyncio import Redis

from sortie_orchestrator.app import background, create_app
from sortie_orchestrator.settings import OrchestratorSettings
from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.waiting import wait_until_async
from tests.orchestrator.conftest import TOKEN, settings_for

BODY = {"subject": {"user_id": "alice"}, "targets": ["m365"]}


def _client(settings: OrchestratorSettings) -> tuple[httpx.AsyncClient, object]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(
        transport=transport,
        base_url="http://orchestrator",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    return client, app


def _assert_503(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.json()["type"] == "urn:sortie:problem:store-unavailable"


async def test_unreachable_redis_is_a_503_with_retry_after(redis_server: RedisServer) -> None:
    gone = RedisServer()
    gone.port = free_port()  # nothing listens there
    client, _app = _client(settings_for(gone, redis_pool_timeout_s=0.2))
    async with client:
        _assert_503(await client.post("/v1/logouts", json=BODY))
        _assert_503(await client.post("/v1/offboardings", json={"subject": {"user_id": "a"}}))


async def test_a_saturated_pool_is_a_503_and_nothing_is_half_written(
    redis: Redis, redis_server: RedisServer
) -> None:
    """Callers at one moment share a round trip (sortie_core.coalesce): the first ones
    are sent together and held by Redis; those who then wait past the pool's timeout
    for a round trip are answered 503, their commands never sent."""
    settings = settings_for(redis_server, redis_max_connections=4, redis_pool_timeout_s=0.3)
    client, _app = _client(settings)
    await redis.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    try:
        async with client:
            first = [asyncio.create_task(client.post("/v1/logouts", json=BODY)) for _ in range(4)]
            await asyncio.sleep(0.2)  # sent, and held by Redis
            later = [client.post("/v1/logouts", json=BODY) for _ in range(8)]
            answers = await asyncio.gather(*first, *later)
    finally:
        await redis.execute_command("CLIENT", "UNPAUSE")
    statuses = {r.status_code for r in answers}
    assert 500 not in statuses
    unavailable = [r for r in answers if r.status_code == 503]
    assert unavailable
    _assert_503(unavailable[0])
    accepted = sum(1 for r in answers if r.status_code == 202)
    assert accepted
    # Whatever got a 202 is stored with its command; nothing else was written.
    assert await redis.zcard("sortie:requests") == accepted
    assert (
        await redis.xlen("logout.requested") if await redis.exists("logout.requested") else 0
    ) == accepted


async def test_readyz_reports_stopped_subscribers(redis: Redis, redis_server: RedisServer) -> None:
    client, app = _client(settings_for(redis_server))
    wiring = app.state.wiring  # type: ignore[attr-defined]
    async with background(wiring), client:
        assert (await client.get("/readyz")).status_code == 200
        await wiring.consumers._subscribers[0].stop()  # as FastStream does on NOGROUP
        resp = await client.get("/readyz")
        assert (resp.status_code, resp.json()["status"]) == (503, "subscribers stopped")

        # The claim loop restarts it (recreating the groups) and readiness comes back.
        async def ready() -> bool:
            return (await client.get("/readyz")).status_code == 200

        await wait_until_async(ready, 5, 0.05, "ready again")
