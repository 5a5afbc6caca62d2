"""The agent's Redis ACL user against a real redis-server: enough to do its job, nothing
more. It cannot publish a logout, read another host's commands or write another host's
presence."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError

from sortie_cli.main import main
from sortie_core import streams
from sortie_core.acl import (
    agent_redis_url,
    agent_user,
    new_password,
    password_hash,
    setuser_command,
)
from sortie_core.broker import publish
from sortie_core.events import Outcome, RevocationCompleted
from sortie_core.presence import read_presence, wake
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.bootstrap import SERVICE, make_build
from sortie_workstation.settings import AgentSettings
from tests.support.workers import (
    command,
    logout,
    offboard,
    read_events,
    running_worker,
    wait_drained,
    wait_for_events,
)

HOST = "pc-acl"


async def test_agent_works_under_its_acl_user_and_nothing_more(
    redis: Redis, redis_server: RedisServer
) -> None:
    password = new_password()
    await redis.execute_command(*setuser_command(HOST, password_hash(password)))
    url = agent_redis_url(redis_server.url, HOST, password)
    assert url.startswith(f"redis://{agent_user(HOST)}:") and url.endswith(
        f"@127.0.0.1:{redis_server.port}/0"
    )
    # The ACL holds the password's hash only.
    assert password not in str(await redis.execute_command("ACL", "LIST"))

    backend = FakeSessions()
    backend.open(1, "alice")
    settings = fast(AgentSettings, url, host=HOST, heartbeat_s=30)
    event = logout()
    async with running_worker(SERVICE, settings, make_build(settings, backend=backend)):
        await command(redis, streams.workstation_stream(HOST), event)
        [done] = await wait_for_events(redis, streams.agent_results_stream(HOST))
        # The same command again (a redelivery) is recognised by its per-host dedupe key.
        await command(redis, streams.workstation_stream(HOST), event)
        await wait_drained(redis, streams.workstation_stream(HOST), streams.GROUP_WORKSTATION)
        again = await read_events(redis, streams.agent_results_stream(HOST))
    assert isinstance(done, RevocationCompleted)
    assert [(s.action, s.outcome) for s in done.steps] == [("logoff", Outcome.SUCCEEDED)]
    assert len(again) == 1
    assert await redis.exists(f"sortie:seen:workstation-agent:{HOST}:{event.event_id}")
    record = await read_presence(redis, HOST)
    assert record is not None and record.users == frozenset()
    assert await redis.smembers("sortie:agent-hosts") == {HOST.encode()}

    agent = Redis.from_url(url)
    try:
        refused = [
            agent.xadd(streams.LOGOUT_REQUESTED, {"data": "{}"}),
            agent.xadd(streams.OFFBOARD_REQUESTED, {"data": "{}"}),
            agent.xadd(streams.workstation_stream(HOST), {"data": "{}"}),
            agent.xadd(streams.REQUEST_FINISHED, {"data": "{}"}),
            agent.xreadgroup(
                streams.GROUP_WORKSTATION, "x", {streams.workstation_stream("pc-other"): ">"}
            ),
            agent.xrange(streams.workstation_stream("pc-other")),
            agent.xrange(streams.REVOCATION_COMPLETED),
            # A report for another service or another host: only its own results stream.
            agent.xadd(streams.REVOCATION_COMPLETED, {"data": done.model_dump_json()}),
            agent.xadd(streams.agent_results_stream("pc-other"), {"data": "{}"}),
            agent.xrange(streams.agent_results_stream("pc-other")),
            agent.hset("sortie:agent:pc-other", "users", "[]"),
            agent.set("sortie:seen:workstation-agent:pc-other:x", "1"),
            agent.set("sortie:seen:orchestrator:x", "1"),
            agent.sadd("sortie:hosts:alice", HOST),
            agent.get("sortie:req:{x}"),
            agent.keys("*"),
            agent.flushall(),
            agent.execute_command("ACL", "SETUSER", "me", "on", "+@all", "~*"),
            agent.publish("chan", "x"),
            # No shared stream at all: an XADD there could block or empty it for everyone.
            agent.xadd("agent.presence", {"data": "{}"}),
            agent.xadd(streams.DEADLETTER, {"data": "{}"}),
            agent.xadd(streams.agent_deadletter_stream("pc-other"), {"data": "{}"}),
            agent.publish(streams.agent_wake_channel("pc-other"), "results"),
            agent.srem("sortie:agent-hosts", "pc-other"),
            agent.delete("sortie:agent-hosts"),
        ]
        for call in refused:
            with pytest.raises(NoPermissionError):
                await call
        # What it may do.
        await publish(agent, streams.agent_results_stream(HOST), done)
        await wake(agent, HOST, "results")
        await agent.xadd(streams.agent_deadletter_stream(HOST), {"data": "{}"})
        await agent.sadd("sortie:agent-hosts", HOST)
        await agent.hset(f"sortie:agent:{HOST}", "version", "x")
    finally:
        await agent.aclose()
    other = offboard()
    await command(redis, streams.workstation_stream("pc-other"), other)
    assert await redis.xlen(streams.LOGOUT_REQUESTED) == 0
    assert await redis.xlen(streams.REVOCATION_COMPLETED) == 0
    assert await redis.xlen(streams.agent_results_stream("pc-other")) == 0
    assert await redis.xlen(streams.agent_results_stream(HOST)) == 2


async def test_wrong_password_is_refused(redis: Redis, redis_server: RedisServer) -> None:
    await redis.execute_command(*setuser_command(HOST, password_hash("right-one")))
    client = Redis.from_url(agent_redis_url(redis_server.url, HOST, "wrong-one"))
    with pytest.raises(AuthenticationError):
        await client.ping()
    await client.aclose()


async def test_cli_prints_and_applies_the_acl(
    redis: Redis, redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--workdir", str(tmp_path), "agent-acl", "PC-9", "--apply"]
    with pytest.raises(SystemExit) as exit_:
        await asyncio.to_thread(main, [*args, "--redis-url", redis_server.url])
    assert exit_.value.code == 0
    secret_file = tmp_path / "agents" / "pc-9.password"
    password = secret_file.read_text().strip()
    assert secret_file.stat().st_mode & 0o777 == 0o600
    out = capsys.readouterr().out
    assert out.startswith("ACL SETUSER sortie-agent-pc-9 reset on '#")
    assert password not in out and password_hash(password) in out
    agent = Redis.from_url(agent_redis_url(redis_server.url, "pc-9", password))
    try:
        assert await agent.ping()
        with pytest.raises(NoPermissionError):
            await agent.xadd(streams.LOGOUT_REQUESTED, {"data": "{}"})
    finally:
        await agent.aclose()
    # Run again: the same password is reused, so a deployed agent keeps working.
    with pytest.raises(SystemExit):
        await asyncio.to_thread(main, [*args, "--redis-url", redis_server.url])
    assert secret_file.read_text().strip() == password
    with pytest.raises(SystemExit) as bad:
        await asyncio.to_thread(main, ["--workdir", str(tmp_path), "agent-acl", "a.b"])
    assert bad.value.code == 2
