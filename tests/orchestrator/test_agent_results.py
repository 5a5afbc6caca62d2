"""Agents' reports come only from each host's own results stream (real redis-server, the
orchestrator's real consumers): genuine ones move the request on, forged ones are
dead-lettered and change nothing, and a lost announcement is recovered."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import ensure_groups, publish
from sortie_core.events import DeadLettered
from sortie_core.presence import PresenceRecord, wake, write_presence
from sortie_orchestrator.app import background, create_app
from sortie_testkit.redis_server import RedisServer
from sortie_testkit.waiting import wait_until_async
from tests.orchestrator.conftest import TOKEN, settings_for
from tests.orchestrator.test_replicas import report
from tests.support.workers import logout


@pytest.fixture
async def app(redis: Redis, redis_server: RedisServer) -> AsyncIterator[FastAPI]:
    # Deadlines far off, so a state that stays put was not moved by a timeout either.
    app = create_app(settings_for(redis_server, phase1_timeout_s=60.0, sso_timeout_s=60.0))
    async with background(app.state.wiring):
        yield app


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://orchestrator",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as c:
        yield c


async def _logout(app: FastAPI, api: httpx.AsyncClient, redis: Redis) -> uuid.UUID:
    """A logout of alice, who has sessions on pc-1 and pc-2."""
    for host in ("pc-1", "pc-2"):
        await write_presence(
            redis, PresenceRecord(host, "0.1.0", frozenset({"alice"}), time.time(), 30.0)
        )
        await app.state.deps.presence.refresh(host)
    resp = await api.post(
        "/v1/logouts",
        json={"subject": {"user_id": "alice"}, "targets": ["m365", "workstations"]},
    )
    assert resp.status_code == 202, resp.text
    return uuid.UUID(resp.json()["request_id"])


async def _states(api: httpx.AsyncClient, rid: uuid.UUID) -> dict[str, str]:
    body = (await api.get(f"/v1/requests/{rid}")).json()
    return {name: s["state"] for name, s in body["services"].items()}


async def _wait_state(api: httpx.AsyncClient, rid: uuid.UUID, service: str, state: str) -> None:
    async def reached() -> bool:
        return (await _states(api, rid)).get(service) == state

    await wait_until_async(reached, 5, what=f"{service} {state}")


async def _deadletters(redis: Redis, count: int) -> list[DeadLettered]:
    async def enough() -> list[Any]:
        entries = await redis.xrange(streams.DEADLETTER)
        return entries if len(entries) >= count else []

    entries = await wait_until_async(enough, 5, what=f"{count} dead-letter entries")
    return [DeadLettered.model_validate_json(f[b"data"]) for _, f in entries]


async def _idle_ms(redis: Redis, stream: str, at_least: int) -> bool:
    """Whether the stream's first pending entry went unacknowledged `at_least` ms (past
    claim_idle_ms: a re-drain may claim it)."""
    [entry] = await redis.xpending_range(stream, streams.GROUP_ORCHESTRATOR, "-", "+", 1)
    return int(entry["time_since_delivered"]) > at_least


async def _pending(redis: Redis, stream: str) -> int:
    summary: Any = await redis.xpending(stream, streams.GROUP_ORCHESTRATOR)
    return int(summary["pending"])


async def test_genuine_report_moves_the_request_on(
    app: FastAPI, api: httpx.AsyncClient, redis: Redis
) -> None:
    rid = await _logout(app, api, redis)
    before = await _states(api, rid)
    assert before["workstation:pc-1"] == before["workstation:pc-2"] != "reported"
    stream = streams.agent_results_stream("pc-1")
    assert stream == "agent.results.pc-1" == streams.agent_results_stream("PC-1")
    await publish(redis, stream, report(rid, "workstation:pc-1"))
    await wake(redis, "pc-1", "results")
    await _wait_state(api, rid, "workstation:pc-1", "reported")
    after = await _states(api, rid)
    assert after == before | {"workstation:pc-1": "reported"}
    assert await _pending(redis, stream) == 0
    assert await redis.xlen(streams.DEADLETTER) == 0


async def test_forged_reports_on_a_results_stream_are_dead_lettered(
    app: FastAPI, api: httpx.AsyncClient, redis: Redis
) -> None:
    rid = await _logout(app, api, redis)
    before = await _states(api, rid)
    stream = streams.agent_results_stream("pc-1")
    # What a compromised pc-1 could write: reports for m365 and for pc-2, and junk.
    await publish(redis, stream, report(rid, "m365"))
    await publish(redis, stream, report(rid, "workstation:pc-2"))
    await publish(redis, stream, logout())
    await redis.xadd(stream, {"type": "x", "data": "not json"})
    await wake(redis, "pc-1", "results")
    records = await _deadletters(redis, 4)
    assert [(r.stream, r.group, r.reason) for r in records] == [
        (stream, streams.GROUP_ORCHESTRATOR, "forged_report"),
        (stream, streams.GROUP_ORCHESTRATOR, "forged_report"),
        (stream, streams.GROUP_ORCHESTRATOR, "forged_report"),
        (stream, streams.GROUP_ORCHESTRATOR, "invalid_message"),
    ]
    assert "'m365' reported by pc-1" in records[0].detail
    assert "'workstation:pc-2' reported by pc-1" in records[1].detail
    assert records[3].data == "not json"
    assert await _pending(redis, stream) == 0
    # A genuine report after them, on the same stream: once it is applied, the forged
    # ones were long processed, and they changed nothing.
    await publish(redis, stream, report(rid, "workstation:pc-1"))
    await wake(redis, "pc-1", "results")
    await _wait_state(api, rid, "workstation:pc-1", "reported")
    assert await _states(api, rid) == before | {"workstation:pc-1": "reported"}


async def test_workstation_report_on_the_shared_stream_is_dead_lettered(
    app: FastAPI, api: httpx.AsyncClient, redis: Redis
) -> None:
    rid = await _logout(app, api, redis)
    before = await _states(api, rid)
    await publish(redis, streams.REVOCATION_COMPLETED, report(rid, "workstation:pc-1"))
    # A genuine worker's report on the same stream, after it, is still applied.
    await publish(redis, streams.REVOCATION_COMPLETED, report(rid, "m365"))
    await _wait_state(api, rid, "m365", "reported")
    [record] = await _deadletters(redis, 1)
    assert (record.stream, record.reason) == (streams.REVOCATION_COMPLETED, "forged_report")
    assert "workstation:pc-1" in record.data
    after = await _states(api, rid)
    assert after["workstation:pc-1"] == before["workstation:pc-1"] != "reported"
    assert await _pending(redis, streams.REVOCATION_COMPLETED) == 0


async def test_lost_announcement_and_stale_pending_entry_are_recovered(
    app: FastAPI, api: httpx.AsyncClient, redis: Redis
) -> None:
    results = app.state.wiring.results
    # The sweep re-drains once at start; let that pass first.
    await wait_until_async(lambda: results.last_redrain != float("-inf"), 5, what="a re-drain")
    await asyncio.sleep(0.1)  # its re-drain starts once last_redrain is set: let it finish
    rid = await _logout(app, api, redis)
    # pc-1 reported but its wake-up was lost.
    await publish(redis, streams.agent_results_stream("pc-1"), report(rid, "workstation:pc-1"))
    # pc-2's report was read by a replica that crashed before acknowledging it.
    pc2 = streams.agent_results_stream("pc-2")
    await ensure_groups(redis, [(pc2, streams.GROUP_ORCHESTRATOR)])
    await publish(redis, pc2, report(rid, "workstation:pc-2"))
    taken = await redis.xreadgroup(streams.GROUP_ORCHESTRATOR, "orch-dead", {pc2: ">"})
    assert len(taken[0][1]) == 1
    # A worker's report published after them is applied: the orchestrator's consumers
    # ran past that point, and still neither workstation report was.
    await publish(redis, streams.REVOCATION_COMPLETED, report(rid, "m365"))
    await _wait_state(api, rid, "m365", "reported")
    states = await _states(api, rid)
    assert states["workstation:pc-1"] == states["workstation:pc-2"] != "reported"
    assert await results.redrain_if_due() == 0  # the sweep re-drained at start: not yet due
    results.last_redrain = float("-inf")
    await wait_until_async(lambda: _idle_ms(redis, pc2, 500), 5, what="pc-2's entry idle")
    assert await results.redrain_if_due() == 2
    states = await _states(api, rid)
    assert states["workstation:pc-1"] == states["workstation:pc-2"] == "reported"
    assert await _pending(redis, pc2) == 0
    assert await redis.xlen(streams.DEADLETTER) == 0


async def test_reports_for_unknown_requests_are_dead_lettered_and_invalid_utf8_too(
    app: FastAPI, api: httpx.AsyncClient, redis: Redis
) -> None:
    """Reports for a request that does not exist are not dropped without a trace, and
    one undecodable entry does not stop a host's drain, stranding the reports beside it."""
    rid = await _logout(app, api, redis)
    stream = streams.agent_results_stream("pc-1")
    ghost = uuid.uuid4()
    await publish(redis, streams.REVOCATION_COMPLETED, report(ghost, "m365"))
    await redis.xadd(stream, {"type": "revocation.completed", "data": b"\xff\xfe{"})
    await publish(redis, stream, report(ghost, "workstation:pc-1"))
    await publish(redis, stream, report(rid, "workstation:pc-1"))
    await wake(redis, "pc-1", "results")
    await _wait_state(api, rid, "workstation:pc-1", "reported")
    records = await _deadletters(redis, 3)
    assert sorted((r.stream, r.reason) for r in records) == [
        (stream, "invalid_message"),
        (stream, "unknown_request"),
        (streams.REVOCATION_COMPLETED, "unknown_request"),
    ]
    assert any("\\xff\\xfe" in r.data for r in records)
    assert await _pending(redis, stream) == 0
    assert await _pending(redis, streams.REVOCATION_COMPLETED) == 0
