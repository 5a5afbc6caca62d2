"""One Redis user per service from an ACL file, `default` off, on a real
redis-server started with `--aclfile`: anonymous clients are refused, each service may
do its job and nothing else, users survive a restart and `ACL SAVE` works."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError

from sortie_cli.main import main
from sortie_core import streams
from sortie_core.acl import agent_redis_url, agent_user
from sortie_core.broker import ensure_groups
from sortie_core.credentials import kept_tickets_key, load_kept_tickets, store_kept_tickets
from sortie_core.events import ServiceTicket
from sortie_core.service_acl import ADMIN, ENT, M365, ORCHESTRATOR
from sortie_core.services import expected_wait_key, graph_latency_key
from sortie_testkit.redis_server import RedisServer


def url(server: RedisServer, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def acl_server(tmp_path: Path) -> tuple[RedisServer, dict[str, str], Path]:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# room B12\npc-b12-1\nPC-B12-2  # the teacher's\n")
    out = tmp_path / "users.acl"
    with pytest.raises(SystemExit) as done:
        main(
            ["--workdir", str(tmp_path), "redis-acl", "--out", str(out), "--hosts-file", f"{hosts}"]
        )
    assert done.value.code == 0
    assert out.stat().st_mode & 0o777 == 0o600
    passwords = {
        user: (tmp_path / "redis-users" / f"{user}.password").read_text().strip()
        for user in (ORCHESTRATOR, M365, ENT, ADMIN)
    }
    passwords |= {
        agent_user(h): (tmp_path / "agents" / f"{h}.password").read_text().strip()
        for h in ("pc-b12-1", "pc-b12-2")
    }
    text = out.read_text()
    assert text.startswith("user default off ")
    assert not any(p in text for p in passwords.values())  # hashes only
    server = RedisServer(extra=["--aclfile", str(out)])
    return server, passwords, out


async def test_anonymous_refused_and_each_service_limited(
    acl_server: tuple[RedisServer, dict[str, str], Path],
) -> None:
    server, passwords, _ = acl_server
    server.start_with_auth()
    try:
        anonymous = Redis.from_url(server.url)
        with pytest.raises(AuthenticationError):
            await anonymous.get("sortie:req:{x}")
        await anonymous.aclose()

        m365 = Redis.from_url(url(server, M365, passwords[M365]))
        ent = Redis.from_url(url(server, ENT, passwords[ENT]))
        orch = Redis.from_url(url(server, ORCHESTRATOR, passwords[ORCHESTRATOR]))
        agent = Redis.from_url(
            agent_redis_url(server.url, "pc-b12-2", passwords[agent_user("pc-b12-2")])
        )
        try:
            # What each needs.
            await ensure_groups(m365, [(streams.LOGOUT_REQUESTED, streams.GROUP_M365)])
            await m365.xadd(streams.REVOCATION_COMPLETED, {"data": "{}"})
            await m365.set("sortie:seen:m365-worker:x", "1")
            # The write queue's expected wait and Graph's latency (quota.py), which the
            # orchestrator reads to tell a waiting request.
            await m365.set(expected_wait_key("default"), "0.5", ex=10)
            await m365.set(graph_latency_key("default"), "0.1")
            assert await orch.get(expected_wait_key("default")) == b"0.5"
            await ent.hset("sortie:oidc:jwks", "k", "{}")
            await ent.xadd(streams.SSO_LOGOUT_COMPLETED, {"data": "{}"})
            kept = (ServiceTicket(service="https://esper.example/", ticket="ST-1-x"),)
            await store_kept_tickets(ent, "r", kept, ttl_s=60)
            assert await load_kept_tickets(ent, "r") == kept
            await orch.hset("sortie:req:{r}", "a", "b")
            await orch.xadd(streams.LOGOUT_REQUESTED, {"data": "{}"})
            await orch.xadd(streams.workstation_stream("pc-b12-1"), {"data": "{}"})
            await orch.xrange(streams.agent_results_stream("pc-b12-1"))
            assert await agent.publish(streams.agent_wake_channel("pc-b12-2"), "x") == 0
            # What none of them may do.
            refused = [
                m365.xadd(streams.LOGOUT_REQUESTED, {"data": "{}"}),
                m365.hgetall("sortie:req:{r}"),
                m365.get("sortie:seen:ent-worker:x"),
                m365.hset("sortie:oidc:jwks", "k", "{}"),
                m365.get(kept_tickets_key("r")),
                ent.xadd(streams.OFFBOARD_REQUESTED, {"data": "{}"}),
                ent.hgetall("sortie:req:{r}"),
                ent.xrange(streams.workstation_stream("pc-b12-1")),
                orch.flushall(),
                orch.keys("*"),
                orch.execute_command("CONFIG", "GET", "dir"),
                orch.execute_command("ACL", "LIST"),
                orch.set("unrelated", "1"),
                agent.xadd(streams.workstation_stream("pc-b12-1"), {"data": "{}"}),
            ]
            for call in refused:
                with pytest.raises(NoPermissionError):
                    await call
        finally:
            for client in (m365, ent, orch, agent):
                await client.aclose()

        # ACL SAVE works (there is an aclfile) and the users survive a restart.
        admin_url = url(server, ADMIN, passwords[ADMIN])
        workdir = server.dir / "cli"
        with pytest.raises(SystemExit) as done:
            args = ["--workdir", str(workdir), "agent-acl", "pc-new", "--apply"]
            await asyncio.to_thread(main, [*args, "--redis-url", admin_url])
        assert done.value.code == 0
        server.stop()
        server.start_with_auth()
        password = (workdir / "agents" / "pc-new.password").read_text().strip()
        new = Redis.from_url(agent_redis_url(server.url, "pc-new", password))
        assert await new.publish(streams.agent_wake_channel("pc-new"), "x") == 0
        await new.aclose()
    finally:
        server.cleanup()


async def test_agent_acl_many_hosts_and_warns_about_an_open_default(
    redis_server: RedisServer, redis: Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("pc-1\npc-2\n\npc-3 # comment\n")
    args = ["--workdir", str(tmp_path), "agent-acl", "pc-0", "--hosts-file", str(hosts)]
    with pytest.raises(SystemExit) as done:
        await asyncio.to_thread(main, [*args, "--apply", "--redis-url", redis_server.url])
    assert done.value.code == 0
    captured = capsys.readouterr()
    assert "WARNING: the Redis `default` user is on" in captured.err
    assert "no ACL file" in captured.err
    users = {u.decode() for u in await redis.execute_command("ACL", "USERS")}
    assert {f"sortie-agent-pc-{i}" for i in range(4)} <= users
    for i in range(4):
        assert (tmp_path / "agents" / f"pc-{i}.password").stat().st_mode & 0o777 == 0o600
