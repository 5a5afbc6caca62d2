"""Graph's write quota through msgraph-sdk against the Graph simulator over HTTP, with the
buckets on a real redis-server: app registrations, coalesced revocations, priority,
expected wait and the identity cache."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from sortie_core.events import Outcome, Subject, Verification, utcnow
from sortie_core.metrics import M365_EXPECTED_WAIT
from sortie_core.ratelimit import Bucket, SpreadLimiter
from sortie_core.services import graph_latency_key
from sortie_core.steps import RetryPolicy
from sortie_m365 import quota
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory
from sortie_m365.bootstrap import graph_directory
from sortie_m365.handlers import IdentityConfig, handle_logout
from sortie_m365.identity_cache import IdentityCache
from sortie_m365.settings import M365Settings
from tests.m365.conftest import GraphSim, make_directory
from tests.support.workers import logout

POLICY = RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.002, verify_delay_s=0.01)
CAROL = "carol@example.org"


def _add(graph_sim: GraphSim, upn: str, object_id: str | None = None) -> str:
    user = graph_sim.sim.add_user(upn, object_id=object_id, created_at=utcnow() - timedelta(1))
    return user.id


async def test_two_app_registrations_are_both_used(graph_sim: GraphSim, redis: Redis) -> None:
    settings = M365Settings(
        graph_url=graph_sim.url,
        app_registrations=[
            {"client_id": "app-a", "graph_token": "token-a"},
            {"client_id": "app-b", "graph_token": "token-b"},
        ],
        app_writes_limit=50,
        app_writes_window_s=1,
    )
    graph_sim.sim.configure(throttle_writes_per_s=50)
    users = [_add(graph_sim, f"reg{n}@example.org") for n in range(12)]
    directory = graph_directory(settings, redis)
    try:
        await asyncio.gather(*(directory.revoke_sessions(u) for u in users))
        queue = directory._limiter
        assert isinstance(queue, quota.WriteQueue)
        assert sum(queue.granted) == 12 and min(queue.granted) >= 4
    finally:
        await directory.aclose()
    # The simulator saw writes from both applications (one bucket each), and no 429.
    assert set(graph_sim.sim.throttle.apps) == {("token-a", "default"), ("token-b", "default")}
    assert graph_sim.sim.stats.throttled == 0 and graph_sim.sim.stats.writes == 12


async def test_a_second_revocation_of_a_pending_user_is_coalesced(graph_sim: GraphSim) -> None:
    _add(graph_sim, CAROL)
    graph_sim.sim.configure(latency_ms=150)
    directory = make_directory(graph_sim.url)
    carol = Subject(user_id="carol", upn=CAROL)
    try:
        first, second = await asyncio.gather(
            *(handle_logout(logout(carol), directory=directory, policy=POLICY) for _ in range(2))
        )
    finally:
        await directory.aclose()
    assert first is not None and second is not None
    steps = [first.steps[0], second.steps[0]]
    assert [(s.outcome, s.verification) for s in steps] == [
        (Outcome.SUCCEEDED, Verification.VERIFIED)
    ] * 2
    # One Graph call for both; the one that joined says so, with its own read-back.
    assert graph_sim.sim.find(CAROL).revocation_count == 1  # type: ignore[union-attr]
    joined = [s for s in steps if s.detail and quota.JOINED in s.detail]
    assert len(joined) == 1 and joined[0].evidence is not None


def _queue(redis: Redis, rate: float, apps: int = 1) -> quota.WriteQueue:
    limiter = SpreadLimiter(
        redis,
        "q:tenant",
        tuple(f"q:app:{n}" for n in range(apps)),
        Bucket(rate, 1),
        Bucket(rate, 1),
    )
    return quota.WriteQueue(limiter, redis, "test")


async def _as(priority: int, call: Callable[[], Awaitable[Any]]) -> Any:
    quota.PRIORITY.set(priority)
    return await call()


async def test_offboarding_outranks_logout_under_a_full_bucket(redis: Redis) -> None:
    queue = _queue(redis, rate=5)
    try:
        await queue.acquire()  # the bucket is empty now
        order: list[str] = []

        async def write(name: str) -> None:
            await queue.acquire()
            order.append(name)

        logouts = [asyncio.create_task(_as(quota.LOGOUT, lambda: write("logout")))]
        await asyncio.sleep(0.01)
        offboards = [asyncio.create_task(_as(quota.OFFBOARD, lambda: write("offboard")))]
        await asyncio.sleep(0.01)
        # Two writes wait at 5/s: the gauge and the key other services read say 0.4 s.
        assert queue.expected_wait_s == pytest.approx(0.4)
        assert M365_EXPECTED_WAIT._value.get() == pytest.approx(0.4)  # type: ignore[attr-defined]
        await asyncio.gather(*logouts, *offboards)
        assert order == ["offboard", "logout"]
        assert float(await redis.get(quota.expected_wait_key("test")) or -1) >= 0
        assert queue.expected_wait_s == 0
    finally:
        await queue.aclose()


async def test_spread_limiter_shares_the_tenant_among_apps(redis: Redis) -> None:
    limiter = SpreadLimiter(
        redis, "s:tenant", ("s:a", "s:b", "s:c"), Bucket(100, 5), Bucket(100, 2), ahead_s=0
    )
    grants, wait = await limiter.take(10)
    # The tenant's burst (5) caps the three apps' (6), spread across them, all due now.
    assert len(grants) == 5 and {app for app, _ in grants} == {0, 1, 2} and wait > 0
    assert all(due == 0 for _, due in grants)
    assert limiter.rate == 100


async def test_tokens_reserved_ahead_are_due_at_the_rate(redis: Redis) -> None:
    # A dispatcher that comes back late loses nothing: up to ahead_s of tokens beyond the
    # burst are granted at once, each due when the buckets have refilled to it.
    limiter = SpreadLimiter(redis, "r:tenant", ("r:a", "r:b"), Bucket(100, 4), Bucket(60, 2))
    first = time.monotonic()
    grants, wait = await limiter.take(50)
    # Tenant: burst 4 + 10 ahead; apps: 2 + 6 ahead each (16): the tenant caps at 14.
    assert len(grants) == 14 and wait > 0
    dues = sorted(due for _, due in grants)
    assert dues[:4] == [0, 0, 0, 0]  # the burst: due now
    # The last one is due when the tenant's bucket has refilled ten tokens (0.1 s).
    assert dues[-1] == pytest.approx(0.1, abs=0.005)
    # Never sooner than each bucket's rate allows: the k-th reserved token of an app
    # (60/s, burst 2) is due no sooner than k/60 s.
    for app in (0, 1):
        mine = sorted(due for a, due in grants if a == app)
        for k, due in enumerate(mine[2:], start=1):
            assert due >= k / 60 - 0.002
    # A later take queues behind what was reserved: due after the last reserved token.
    again, _ = await limiter.take(5)
    later = time.monotonic() - first
    assert all(later + due >= 0.1 for _, due in again)


async def test_the_cache_saves_the_lookup_and_forgets_on_not_found(graph_sim: GraphSim) -> None:
    first_id = _add(graph_sim, CAROL, "c0000000-0000-4000-8000-000000000001")
    identity = IdentityConfig(cache=IdentityCache(size=10, ttl_s=60))
    directory: GraphSdkDirectory = make_directory(graph_sim.url)
    carol = Subject(user_id="carol", upn=CAROL)

    async def revoke() -> Any:
        before = graph_sim.sim.stats.requests
        report = await handle_logout(
            logout(carol), directory=directory, policy=POLICY, identity=identity
        )
        assert report is not None and report.steps[0].done
        return report.steps[0], graph_sim.sim.stats.requests - before

    try:
        step, calls = await revoke()
        assert calls == 3  # lookup, revoke, read-back
        assert "user lookup" in (step.detail or "") and "(cached)" not in (step.detail or "")
        step, calls = await revoke()
        assert calls == 2  # no lookup: the cache answered
        assert "(cached)" in (step.detail or "")
        # Carol is deleted and comes back with a new object id: the cached id is not found,
        # forgotten, and she is looked up again.
        sim = graph_sim.sim
        del sim.users[first_id]
        sim._index = {k: v for k, v in sim._index.items() if v != first_id}
        second_id = _add(graph_sim, CAROL, "c0000000-0000-4000-8000-000000000002")
        step, calls = await revoke()
        assert step.outcome is Outcome.SUCCEEDED and "(cached)" not in (step.detail or "")
        assert sim.users[second_id].revocation_count == 1
        assert identity.cache is not None and identity.cache.hits == 2
    finally:
        await directory.aclose()


async def test_concurrency_is_sized_from_the_quota_and_the_measured_latency(
    redis: Redis, redis_server: Any
) -> None:
    from sortie_m365.sizing import sized

    defaults = M365Settings(redis_url=redis_server.url)
    # Graph's limits, one registration: 3,000 per 150 s less 2 % headroom; 250 ms a call.
    assert defaults.writes_per_s == pytest.approx(19.6)
    assert defaults.concurrency == quota.concurrency_for(19.6, 0.25) == 45
    two = M365Settings(
        redis_url=redis_server.url,
        app_registrations=[
            {"client_id": "a", "client_secret": "s1"},
            {"client_id": "b", "client_secret_file": "/run/secrets/b"},
        ],
    )
    assert two.writes_per_s == pytest.approx(39.2)
    # A replica measured 800 ms per call: the next start holds more users in flight.
    await redis.set(graph_latency_key("default"), "0.8")
    assert (await sized(defaults)).concurrency == quota.concurrency_for(19.6, 0.8) == 142
    explicit = M365Settings(redis_url=redis_server.url, concurrency=7)
    assert (await sized(explicit)).concurrency == 7
    assert quota.concurrency_for(1e6, 10) == 512  # bounded


async def test_writes_fail_as_transient_when_the_quota_cannot_be_read() -> None:
    from sortie_core.errors import TransientError
    from sortie_testkit.redis_server import free_port

    down = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    queue = _queue(down, rate=5)
    try:
        with pytest.raises(TransientError) as caught:
            await queue.acquire()
        assert caught.value.code == "quota_unavailable"
    finally:
        await queue.aclose()
        await down.aclose()
