"""The Microsoft 365 worker in-process against a real redis-server and an in-test Graph."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import publish
from sortie_core.events import Outcome, RevocationCompleted, Target
from sortie_m365.bootstrap import SERVICE, make_build
from sortie_m365.settings import M365Settings
from tests.redis_server import RedisServer
from tests.workers.helpers import fast, logout, offboard, running_worker, wait_for_events
from tests.workers.test_m365_graph_http import KNOWN, TOKEN, graph_stub


def settings_for(redis_server: RedisServer, graph_url: str, **kw: Any) -> M365Settings:
    return fast(M365Settings, redis_server.url, graph_url=graph_url, graph_token=TOKEN, **kw)


async def test_logout_through_redis_and_graph(
    redis: Redis, redis_server: RedisServer, serve: Callable[[Any], str]
) -> None:
    stub = graph_stub({KNOWN})
    settings = settings_for(redis_server, serve(stub))
    # Published before the worker starts: its group is created from id 0, so it is seen.
    event = logout()
    await publish(redis, streams.LOGOUT_REQUESTED, event)
    async with running_worker(SERVICE, settings, make_build(settings)):
        [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
    assert isinstance(done, RevocationCompleted)
    assert done.service == "m365"
    assert done.request_id == event.request_id
    assert [(s.action, s.outcome) for s in done.steps] == [("revoke_sessions", Outcome.SUCCEEDED)]
    assert [s.path for s in stub.calls("POST")] == [f"/v1.0/users/{KNOWN}/revokeSignInSessions"]
    # Acknowledged: nothing left pending for the group.
    pending = await redis.xpending(streams.LOGOUT_REQUESTED, streams.GROUP_M365)
    assert pending["pending"] == 0


async def test_offboard_and_untargeted_logout(
    redis: Redis, redis_server: RedisServer, serve: Callable[[Any], str]
) -> None:
    stub = graph_stub({KNOWN})
    settings = settings_for(redis_server, serve(stub))
    async with running_worker(SERVICE, settings, make_build(settings)):
        await publish(redis, streams.LOGOUT_REQUESTED, logout(targets=(Target.ENT,)))
        event = offboard()
        await publish(redis, streams.OFFBOARD_REQUESTED, event)
        events = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
        # Give the untargeted logout time to (not) produce anything.
        await wait_for_events(redis, streams.REVOCATION_COMPLETED, count=2, timeout_s=0.5)
    [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED, timeout_s=0)
    assert done == events[0]
    assert done.request_id == event.request_id
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("block_sign_in", Outcome.SUCCEEDED),
        ("reset_password", Outcome.SUCCEEDED),
        ("revoke_sessions", Outcome.SUCCEEDED),
        ("disable_mail_protocols", Outcome.SKIPPED),
    ]
    assert [(s.method, s.path.rsplit("/", 1)[-1]) for s in stub.seen] == [
        ("PATCH", KNOWN),
        ("PATCH", KNOWN),
        ("POST", "revokeSignInSessions"),
    ]
    password = stub.seen[1].json()["passwordProfile"]["password"]
    assert len(password) >= 32
    # The password went to Graph and nowhere else in Redis.
    for stream in (streams.REVOCATION_COMPLETED, streams.OFFBOARD_REQUESTED):
        for _, fields in await redis.xrange(stream):
            assert password.encode() not in fields[b"data"]


async def test_deadlettered_command_still_reports_its_steps(
    redis: Redis, redis_server: RedisServer, serve: Callable[[Any], str]
) -> None:
    """An entry delivered too often (a consumer kept dying on it) is dead-lettered, and
    the hook reports its steps failed so the request can finish."""
    stub = graph_stub({KNOWN})
    settings = settings_for(redis_server, serve(stub), max_deliveries=3, claim_idle_ms=100)
    event = offboard(actions=("block_sign_in", "revoke_sessions"))
    await redis.xgroup_create(streams.OFFBOARD_REQUESTED, streams.GROUP_M365, id="0", mkstream=True)
    entry_id = await publish(redis, streams.OFFBOARD_REQUESTED, event)
    # A consumer that died mid-way, again and again: each claim counts a delivery.
    await redis.xreadgroup(streams.GROUP_M365, "ghost", {streams.OFFBOARD_REQUESTED: ">"})
    for _ in range(3):
        await redis.xclaim(streams.OFFBOARD_REQUESTED, streams.GROUP_M365, "ghost", 0, [entry_id])
    async with running_worker(SERVICE, settings, make_build(settings)):
        [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
        dead = await redis.xrange(streams.DEADLETTER)
    assert done.request_id == event.request_id
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("block_sign_in", Outcome.FAILED),
        ("revoke_sessions", Outcome.FAILED),
    ]
    assert all(s.error is not None and s.error.code == "deadlettered" for s in done.steps)
    assert stub.seen == []  # never executed
    assert len(dead) == 1
    assert dead[0][1][b"reason"] == b"max_deliveries"
