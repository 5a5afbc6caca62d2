"""A compromised workstation agent cannot hide another host's sessions,
against a real redis-server with the agents' ACL users and the real orchestrator.

What it tries: an entry with the largest possible id and `MAXLEN 0` on every stream its
account can write (on a shared stream that would make every other agent's XADD fail and
empty what was there), and a flood of wake-ups. A user who then logs on at another host
is still logged off by a logout."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from sortie_core import streams
from sortie_core.acl import agent_redis_url, new_password, password_hash, setuser_command
from sortie_core.presence import PresenceRecord, write_presence
from sortie_orchestrator.app import background, create_app
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.settings import fast
from sortie_testkit.waiting import wait_until_async
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.bootstrap import SERVICE, make_build
from sortie_workstation.settings import AgentSettings
from tests.orchestrator.conftest import TOKEN, settings_for
from tests.support.workers import running_worker

MAX_ID = "18446744073709551615-18446744073709551615"
EVERY_STREAM = [
    *streams.ALL_FIXED_STREAMS,
    "agent.presence",  # the shared announcement stream agents wrote before
    streams.workstation_stream("pc-evil"),
    streams.agent_results_stream("pc-evil"),
    streams.agent_deadletter_stream("pc-evil"),
    streams.workstation_stream("pc-good"),
    streams.agent_results_stream("pc-good"),
    streams.agent_deadletter_stream("pc-good"),
]


@pytest.fixture
async def api(redis: Redis, redis_server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(
        settings_for(redis_server, phase1_timeout_s=20.0, presence_sweep_s=0.3)
    )
    async with (
        background(app.state.wiring),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://orchestrator",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


async def agent_url(redis: Redis, redis_server: RedisServer, host: str) -> str:
    password = new_password()
    await redis.execute_command(*setuser_command(host, password_hash(password)))
    return agent_redis_url(redis_server.url, host, password)


async def indexed(api: httpx.AsyncClient, user: str, host: str, timeout_s: float = 10) -> bool:
    presence = api.app.state.deps.presence  # type: ignore[attr-defined]

    async def found() -> bool:
        return host in [h.host for h in await presence.hosts_for(user)]

    return await wait_until_async(found, timeout_s, 0.05, f"{host} indexed for {user}")


async def logged_off(api: httpx.AsyncClient, user: str, host: str) -> dict[str, object]:
    resp = await api.post(
        "/v1/logouts", json={"subject": {"user_id": user}, "targets": ["workstations"]}
    )
    assert resp.status_code == 202, resp.text
    service = f"workstation:{host}"

    async def reported() -> dict[str, object] | None:
        body = (await api.get(resp.headers["Location"])).json()
        state = body["services"].get(service, {})
        return dict(state) if state.get("state") == "reported" else None

    return await wait_until_async(reported, 20, 0.05, f"{service} reported")


async def test_max_id_and_maxlen_zero_from_an_agent_hide_no_other_session(
    redis: Redis, redis_server: RedisServer, api: httpx.AsyncClient
) -> None:
    evil = Redis.from_url(await agent_url(redis, redis_server, "pc-evil"))
    good_url = await agent_url(redis, redis_server, "pc-good")
    written: list[str] = []
    try:
        for stream in EVERY_STREAM:
            with contextlib.suppress(NoPermissionError):
                await evil.xadd(stream, {"data": "x"}, id=MAX_ID, maxlen=0)
                written.append(stream)
        for _ in range(300):
            await evil.publish(streams.agent_wake_channel("pc-evil"), "results")
        with pytest.raises(NoPermissionError):
            await evil.publish(streams.agent_wake_channel("pc-good"), "presence")
    finally:
        await evil.aclose()
    # Only its own host's streams took the entry.
    assert written == [
        streams.agent_results_stream("pc-evil"),
        streams.agent_deadletter_stream("pc-evil"),
    ]

    # Bob then logs on at pc-good; its agent reports him, and a logout logs him off.
    backend = FakeSessions()
    backend.open(7, "bob")
    settings = fast(AgentSettings, good_url, host="pc-good", heartbeat_s=30)
    async with running_worker(SERVICE, settings, make_build(settings, backend=backend)):
        assert await indexed(api, "bob", "pc-good")
        service = await logged_off(api, "bob", "pc-good")
    assert [(s["action"], s["outcome"]) for s in service["steps"]] == [  # type: ignore[attr-defined]
        ("logoff", "succeeded")
    ]
    assert backend.sessions == {}


async def test_a_lost_wake_up_hides_a_session_no_longer_than_a_sweep(
    redis: Redis, redis_server: RedisServer, api: httpx.AsyncClient
) -> None:
    quiet = Redis.from_url(await agent_url(redis, redis_server, "pc-quiet"))
    try:
        # The record is written but the wake-up never comes (lost, or never sent).
        await write_presence(
            quiet, PresenceRecord("pc-quiet", "0.1.0", frozenset({"carol"}), time.time(), 10.0)
        )
    finally:
        await quiet.aclose()
    assert await indexed(api, "carol", "pc-quiet", timeout_s=3)
