"""The simulated session backend on the wire, the agent's presence, and the agent
in-process against a real redis-server and an in-test workstations simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.errors import NotFoundError, PermanentError, TransientError
from sortie_core.events import Outcome, RevocationCompleted
from sortie_core.presence import read_presence
from sortie_core.steps import RetryPolicy
from sortie_testkit.redis_server import RedisServer, free_port
from sortie_testkit.settings import fast
from sortie_testkit.waiting import wait_until_async
from sortie_workstation import __version__
from sortie_workstation.adapters import Session
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.adapters.simulated import SimulatedSessions
from sortie_workstation.agent import Agent
from sortie_workstation.bootstrap import SERVICE, make_build
from sortie_workstation.settings import AgentSettings
from tests.support.stub_http import Reply, Seen, StubHttp
from tests.support.workers import (
    Wakes,
    command,
    logout,
    offboard,
    read_events,
    running_worker,
    wait_drained,
    wait_for_events,
)

HOST = "pc-101"
POLICY = RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.002)


def workstations_stub(sessions: dict[str, dict[int, dict[str, Any]]]) -> StubHttp:
    """The simulator's shape: GET the sessions of a host, POST an action on one."""

    def default(seen: Seen) -> Reply:
        parts = seen.path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "hosts" or parts[1] not in sessions:
            return Reply(404, {"detail": "unknown host"})
        host = sessions[parts[1]]
        if seen.method == "GET" and len(parts) == 3:
            return Reply(
                200, [{"id": i, **s, "logon_time": "2026-11-21T08:00:00Z"} for i, s in host.items()]
            )
        if seen.method == "POST" and len(parts) == 5:
            session = host.get(int(parts[3]))
            if session is None:
                return Reply(404, {"detail": "no such session"})
            if parts[4] == "logoff":
                del host[int(parts[3])]
            else:
                session["state"] = {"lock": "locked", "disconnect": "disconnected"}[parts[4]]
            return Reply(204)
        return Reply(405)

    return StubHttp(default)


def demo_sessions() -> dict[str, dict[int, dict[str, Any]]]:
    return {
        HOST: {
            1: {"user": "alice", "state": "active", "station": "console"},
            2: {"user": "bob", "state": "disconnected", "station": "rdp-1"},
        }
    }


# -- the simulated backend on the wire ---------------------------------------------------
async def test_simulated_backend_lists_and_acts(serve: Callable[[Any], str]) -> None:
    state = demo_sessions()
    stub = workstations_stub(state)
    backend = SimulatedSessions(serve(stub), HOST)
    try:
        sessions = await backend.list_sessions()
        await backend.lock(1)
        await backend.logoff(2)
        with pytest.raises(NotFoundError):
            await backend.disconnect(2)
    finally:
        await backend.aclose()
    assert sessions == [
        Session(1, "alice", "active", "console"),
        Session(2, "bob", "disconnected", "rdp-1"),
    ]
    assert [(s.method, s.path) for s in stub.seen] == [
        ("GET", "/hosts/pc-101/sessions"),
        ("POST", "/hosts/pc-101/sessions/1/lock"),
        ("POST", "/hosts/pc-101/sessions/2/logoff"),
        ("POST", "/hosts/pc-101/sessions/2/disconnect"),
    ]
    assert state[HOST] == {1: {"user": "alice", "state": "locked", "station": "console"}}


async def test_simulated_backend_errors(serve: Callable[[Any], str]) -> None:
    stub = workstations_stub(demo_sessions())
    stub.script("GET", "/hosts/pc-101/sessions", Reply(503), Reply(200, [{"no_id": 1}]))
    stub.script("POST", "/hosts/pc-101/sessions/1/logoff", Reply(403))
    url = serve(stub)
    backend = SimulatedSessions(url, HOST)
    try:
        with pytest.raises(TransientError):
            await backend.list_sessions()
        with pytest.raises(PermanentError) as bad:
            await backend.list_sessions()
        with pytest.raises(PermanentError) as refused:
            await backend.logoff(1)
        unknown = SimulatedSessions(url, "pc-999")
        with pytest.raises(PermanentError) as no_host:
            await unknown.list_sessions()
        await unknown.aclose()
    finally:
        await backend.aclose()
    assert bad.value.code == "backend_bad_answer"
    assert refused.value.code == "backend_rejected" and not isinstance(refused.value, NotFoundError)
    assert not isinstance(no_host.value, NotFoundError)


async def test_simulated_backend_unreachable_is_transient() -> None:
    backend = SimulatedSessions(f"http://127.0.0.1:{free_port()}", HOST)
    with pytest.raises(TransientError) as info:
        await backend.list_sessions()
    await backend.aclose()
    assert info.value.code == "backend_unreachable"


# -- presence ----------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_presence_is_written_and_announced_only_on_change(redis: Redis) -> None:
    backend = FakeSessions()
    backend.open(1, "Alice")
    backend.open(2, "SCHOOL\\bob")
    clock = Clock()
    agent = Agent(
        host=HOST, backend=backend, redis=redis, policy=POLICY, heartbeat_s=5, clock=clock
    )

    wakes = await Wakes(redis).__aenter__()
    assert await agent.refresh_presence()  # start: always announced
    record = await read_presence(redis, HOST)
    assert record is not None
    assert (record.users, record.version, record.heartbeat_at, record.heartbeat_s) == (
        frozenset({"alice", "bob"}),
        __version__,
        1_000.0,
        5.0,
    )
    clock.now = 1_005.0
    await agent.refresh_presence()  # heartbeat, same users: refreshed silently
    record = await read_presence(redis, HOST)
    assert record is not None and record.heartbeat_at == 1_005.0
    assert len(await wakes.settled()) == 1

    del backend.sessions[2]
    await agent.refresh_presence()
    record = await read_presence(redis, HOST)
    assert record is not None and record.users == frozenset({"alice"})
    assert await wakes.settled() == [(f"sortie:agent-wake:{HOST}", "presence")] * 2
    await wakes.__aexit__()
    # The host put itself in the set the orchestrator's sweep reads.
    assert await redis.smembers("sortie:agent-hosts") == {HOST.encode()}


async def test_presence_is_not_written_when_sessions_cannot_be_listed(redis: Redis) -> None:
    backend = FakeSessions(list_failures=[TransientError("down")])
    agent = Agent(host=HOST, backend=backend, redis=redis, policy=POLICY)
    async with Wakes(redis) as wakes:
        assert not await agent.refresh_presence()
        assert await read_presence(redis, HOST) is None
        assert await wakes.settled() == []
        assert await agent.refresh_presence()  # the next heartbeat recovers, and announces
        assert len(await wakes.settled()) == 1


async def test_heartbeat_loop_refreshes_and_idles(redis: Redis) -> None:
    backend = FakeSessions()
    backend.open(1, "alice")
    agent = Agent(host=HOST, backend=backend, redis=redis, policy=POLICY, heartbeat_s=0.1)
    async with Wakes(redis) as wakes:
        started = time.monotonic()
        task = asyncio.create_task(agent.run())
        # At start and about every 100 ms: not only once...
        await wait_until_async(lambda: backend.list_calls >= 3, 5, 0.01, "3 heartbeats")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # ... nor a busy loop: no more calls than one per 100 ms since the start.
        elapsed = time.monotonic() - started
        assert elapsed >= 0.18
        assert backend.list_calls <= 2 + elapsed / 0.1
        assert len(await wakes.settled()) == 1


# -- the agent in-process ------------------------------------------------------------------
def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SORTIE_AGENT_HOST", "PC-204")
    monkeypatch.setenv("SORTIE_AGENT_POLICY", "lock")
    monkeypatch.setenv("SORTIE_AGENT_SHARED_STATION", "true")
    monkeypatch.setenv("REDIS_URL", "redis://redis.test:6379/2")
    settings = AgentSettings()
    assert (settings.host, settings.policy, settings.shared_station) == ("pc-204", "lock", True)
    assert settings.redis_url.get_secret_value() == "redis://redis.test:6379/2"
    assert settings.heartbeat_s == 10 and settings.sim_url == "http://127.0.0.1:8084"
    monkeypatch.setenv("SORTIE_AGENT_HOST", "pc.school.example")
    with pytest.raises(ValueError, match="plain label"):
        AgentSettings()


async def test_agent_consumes_its_own_stream_only(
    redis: Redis, redis_server: RedisServer, serve: Callable[[Any], str]
) -> None:
    state = demo_sessions()
    stub = workstations_stub(state)
    settings = fast(AgentSettings, redis_server.url, host=HOST, sim_url=serve(stub), heartbeat_s=30)
    event = logout()
    wakes = await Wakes(redis).__aenter__()
    async with running_worker(SERVICE, settings, make_build(settings)) as parts:
        assert [(s.stream, s.group) for s in parts.subscriptions] == [
            ("workstation.pc-101", streams.GROUP_WORKSTATION)
        ]
        await command(redis, streams.LOGOUT_REQUESTED, logout())  # not for an agent
        await command(redis, streams.workstation_stream("pc-102"), offboard())  # another host
        await command(redis, streams.workstation_stream(HOST), event)
        [done] = await wait_for_events(redis, streams.agent_results_stream(HOST))
        announced = await wakes.wait(3)
        record = await read_presence(redis, HOST)
        # Nothing else comes: once every command of its stream is done, one report.
        await wait_drained(redis, streams.workstation_stream(HOST), streams.GROUP_WORKSTATION)
        late = await read_events(redis, streams.agent_results_stream(HOST))
    # Agents never report on the shared stream (their ACL forbids it).
    assert await redis.xlen(streams.REVOCATION_COMPLETED) == 0
    assert isinstance(done, RevocationCompleted)
    assert (done.service, done.request_id) == ("workstation:pc-101", event.request_id)
    assert [(s.action, s.outcome, s.detail) for s in done.steps] == [
        ("logoff", Outcome.SUCCEEDED, "logoff of session 1")
    ]
    assert state[HOST] == {2: {"user": "bob", "state": "disconnected", "station": "rdp-1"}}
    # Presence at start (alice and bob), the report, presence after the logoff; the start-up
    # announcement may land after the command was handled, so the order is not fixed.
    await wakes.__aexit__()
    assert sorted(announced) == [
        (f"sortie:agent-wake:{HOST}", "presence"),
        (f"sortie:agent-wake:{HOST}", "presence"),
        (f"sortie:agent-wake:{HOST}", "results"),
    ]
    assert record is not None and record.users == frozenset({"bob"})
    assert len(late) == 1
    groups = await redis.xinfo_groups(streams.LOGOUT_REQUESTED)
    assert groups == []
    assert not any(s.path.startswith("/hosts/pc-102") for s in stub.seen)
