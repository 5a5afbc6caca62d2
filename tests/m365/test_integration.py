"""The Microsoft 365 worker in-process against a real redis-server and the Graph simulator
over HTTP, through msgraph-sdk as bootstrap wires it (static token, shared rate limiter)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import Outcome, RevocationCompleted, SkipReason, Subject, Target
from sortie_m365.bootstrap import SERVICE, make_build
from sortie_m365.settings import M365Settings
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast
from tests.m365.conftest import GUEST, TOKEN, GraphSim
from tests.support.workers import (
    command,
    logout,
    offboard,
    read_events,
    running_worker,
    wait_drained,
    wait_for_events,
)

ALICE_ID = "0a11ce00-0000-4000-8000-000000000001"


def settings_for(redis_server: RedisServer, graph_url: str, **kw: Any) -> M365Settings:
    return fast(M365Settings, redis_server.url, graph_url=graph_url, graph_token=TOKEN, **kw)


async def test_logout_through_redis_and_graph(
    redis: Redis,
    redis_server: RedisServer,
    graph_sim: GraphSim,
) -> None:
    settings = settings_for(redis_server, graph_sim.url)
    # Published before the worker starts: its group is created from id 0, so it is seen.
    event = logout()
    await command(redis, streams.LOGOUT_REQUESTED, event)
    async with running_worker(SERVICE, settings, make_build(settings)):
        [done] = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
    assert isinstance(done, RevocationCompleted)
    assert done.service == "m365"
    assert done.request_id == event.request_id
    assert [(s.action, s.outcome) for s in done.steps] == [("revoke_sessions", Outcome.SUCCEEDED)]
    assert graph_sim.sim.users[ALICE_ID].revocation_count == 1
    # Acknowledged: nothing left pending for the group.
    pending = await redis.xpending(streams.LOGOUT_REQUESTED, streams.GROUP_M365)
    assert pending["pending"] == 0
    # The tenant's write budget lives in Redis, shared by every replica.
    assert await redis.exists("sortie:ratelimit:graph:default") == 1


async def test_offboard_and_untargeted_logout(
    redis: Redis,
    redis_server: RedisServer,
    graph_sim: GraphSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = settings_for(redis_server, graph_sim.url, exchange_url=graph_sim.url)
    async with running_worker(SERVICE, settings, make_build(settings)):
        await command(redis, streams.LOGOUT_REQUESTED, logout(targets=(Target.ENT,)))
        event = offboard()
        await command(redis, streams.OFFBOARD_REQUESTED, event)
        events = await wait_for_events(redis, streams.REVOCATION_COMPLETED)
        # Once the untargeted logout is done (acknowledged), it produced nothing.
        await wait_drained(redis, streams.LOGOUT_REQUESTED, streams.GROUP_M365)
        await wait_drained(redis, streams.OFFBOARD_REQUESTED, streams.GROUP_M365)
    [done] = await read_events(redis, streams.REVOCATION_COMPLETED)
    assert done == events[0]
    assert done.request_id == event.request_id
    assert [(s.action, s.outcome) for s in done.steps] == [
        ("block_sign_in", Outcome.SUCCEEDED),
        ("reset_password", Outcome.SUCCEEDED),
        ("revoke_sessions", Outcome.SUCCEEDED),
        ("disable_mail_protocols", Outcome.SUCCEEDED),
    ]
    user = graph_sim.sim.users[ALICE_ID]
    assert (user.account_enabled, user.force_change, user.revocation_count) == (False, True, 1)
    assert set(user.cas_mailbox.values()) == {False}
    # Sent alone, or with its read-back in a `$batch`.
    bodies = [
        body
        for b in graph_sim.recorder.json_bodies()
        if isinstance(b, dict)
        for body in [b, *(r.get("body") for r in b.get("requests", []))]
    ]
    [password] = [
        b["passwordProfile"]["password"]
        for b in bodies
        if isinstance(b, dict) and "passwordProfile" in b
    ]
    assert len(password) >= 32 and user.password_matches(password)
    # The password went to Graph and nowhere else: not in Redis, not in any log record.
    for stream in (streams.REVOCATION_COMPLETED, streams.OFFBOARD_REQUESTED):
        for _, fields in await redis.xrange(stream):
            assert password.encode() not in fields[b"data"]
    assert caplog.records, "logs were captured"
    for record in caplog.records:
        assert password not in record.getMessage()
        assert password not in repr(record.args)
    assert password not in caplog.text


async def test_guest_and_unknown_users_are_reported(
    redis: Redis,
    redis_server: RedisServer,
    graph_sim: GraphSim,
) -> None:
    settings = settings_for(redis_server, graph_sim.url)
    guest = offboard(Subject(user_id="g", upn=GUEST), actions=("block_sign_in", "revoke_sessions"))
    ghost = logout(Subject(user_id="x", upn="nobody@example.org"))
    async with running_worker(SERVICE, settings, make_build(settings)):
        await command(redis, streams.OFFBOARD_REQUESTED, guest)
        await command(redis, streams.LOGOUT_REQUESTED, ghost)
        events = await wait_for_events(redis, streams.REVOCATION_COMPLETED, count=2)
    by_request = {e.request_id: e for e in events}
    assert [(s.action, s.outcome, s.skip_reason) for s in by_request[guest.request_id].steps] == [
        ("block_sign_in", Outcome.SUCCEEDED, None),
        ("reset_password", Outcome.SKIPPED, SkipReason.ACTION_NOT_SELECTED),
        ("revoke_sessions", Outcome.SKIPPED, SkipReason.GUEST_BY_POLICY),
        ("disable_mail_protocols", Outcome.SKIPPED, SkipReason.ACTION_NOT_SELECTED),
    ]
    assert "guest" in (by_request[guest.request_id].steps[2].detail or "")
    assert all(s.done for s in by_request[guest.request_id].steps)
    [step] = by_request[ghost.request_id].steps
    assert step.outcome is Outcome.NOT_FOUND and step.error is None
    # Graph answered 404 to the UPN and no user to the mail filter: proven unknown.
    assert step.done and step.evidence is not None


async def test_deadlettered_command_still_reports_its_steps(
    redis: Redis,
    redis_server: RedisServer,
    graph_sim: GraphSim,
) -> None:
    """An entry delivered too often (a consumer kept dying on it) is dead-lettered, and
    the hook reports its steps failed so the request can finish."""
    settings = settings_for(redis_server, graph_sim.url, max_deliveries=3, claim_idle_ms=100)
    event = offboard(actions=("block_sign_in", "revoke_sessions"))
    await redis.xgroup_create(streams.OFFBOARD_REQUESTED, streams.GROUP_M365, id="0", mkstream=True)
    entry_id = await command(redis, streams.OFFBOARD_REQUESTED, event)
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
    assert graph_sim.recorder.bodies == []  # never executed
    assert len(dead) == 1
    assert dead[0][1][b"reason"] == b"max_deliveries"
