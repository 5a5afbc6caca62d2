"""Several replicas racing on one request: every transition happens exactly once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import publish
from sortie_core.events import (
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    StepResult,
    Subject,
    Target,
    Verification,
)
from sortie_core.metrics import REGISTRY
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters.saga_store import SagaStore
from sortie_orchestrator.bootstrap import make_deps
from sortie_orchestrator.saga import Timeouts
from sortie_testkit.waiting import wait_until_async

ALICE = Subject(user_id="alice", upn="alice@example.org")


def deps_for(url: str, phase1: float = 30) -> handlers.Deps:
    redis = Redis.from_url(url)
    return make_deps(
        redis,
        SagaStore(redis, retention_s=3600, idempotency_ttl_s=3600),
        Timeouts(phase1=timedelta(seconds=phase1), sso=timedelta(seconds=60)),
    )


def report(rid: uuid.UUID, service: str) -> RevocationCompleted:
    now = datetime.now(UTC)
    return RevocationCompleted(
        request_id=rid,
        subject=ALICE,
        service=service,
        steps=(
            StepResult(
                action="x",
                outcome=Outcome.SUCCEEDED,
                started_at=now,
                finished_at=now,
                verification=Verification.VERIFIED,
            ),
        ),
    )


async def test_concurrent_completions_publish_phase2_exactly_once(redis, redis_server):
    replicas = [deps_for(redis_server.url) for _ in range(4)]
    rids = []
    for _ in range(20):
        _, rid = await handlers.accept_logout(
            replicas[0],
            subject=ALICE,
            reason="t",
            targets=[Target.M365, Target.ENT],
            sso_session=None,
            idempotency_key=None,
            principal="t",
        )
        rids.append(rid)
    jobs = []
    for rid in rids:
        for i, replica in enumerate(replicas):
            # Each replica sees both reports (at-least-once delivery), in any order.
            for service in ("m365", "ent") if i % 2 else ("ent", "m365"):
                jobs.append(handlers.on_revocation(replica, report(rid, service)))
    await asyncio.gather(*jobs)
    entries = await redis.xrange(streams.SSO_LOGOUT_REQUESTED)
    per_request = [e[1][b"request_id"].decode() for e in entries]
    assert sorted(per_request) == sorted(str(r) for r in rids)
    for rid in rids:
        loaded = await replicas[1].store.load(rid)
        assert loaded is not None and loaded.state.status == "sso_logout"


async def test_concurrent_deadlines_fire_once(redis, redis_server):
    replicas = [deps_for(redis_server.url, phase1=0.05) for _ in range(3)]
    _, rid = await handlers.accept_logout(
        replicas[0],
        subject=ALICE,
        reason="t",
        targets=[Target.M365],
        sso_session=None,
        idempotency_key=None,
        principal="t",
    )
    await asyncio.sleep(0.1)
    due = await replicas[0].store.due(datetime.now(UTC))
    assert due == [str(rid)]
    await asyncio.gather(*(handlers.fire_deadline(r, str(rid)) for r in replicas for _ in range(3)))
    assert await redis.xlen(streams.SSO_LOGOUT_REQUESTED) == 1
    loaded = await replicas[0].store.load(rid)
    assert loaded is not None
    assert loaded.state.services["m365"].state == "timed_out"


async def test_full_saga_through_the_streams(client: httpx.AsyncClient, redis: Redis):
    before = (
        REGISTRY.get_sample_value(
            "sortie_request_duration_seconds_count", {"kind": "logout", "status": "completed"}
        )
        or 0.0
    )
    resp = await client.post(
        "/v1/logouts", json={"subject": {"user_id": "alice"}, "targets": ["m365", "ent"]}
    )
    rid = uuid.UUID(resp.json()["request_id"])
    for service in ("m365", "ent"):
        await publish(redis, streams.REVOCATION_COMPLETED, report(rid, service))

    async def status() -> dict:
        return (await client.get(f"/v1/requests/{rid}")).json()

    async def status_is(value: str) -> bool:
        return (await status())["status"] == value

    await wait_until_async(lambda: status_is("sso_logout"), 4, what="sso_logout")
    now = datetime.now(UTC)
    await publish(
        redis,
        streams.SSO_LOGOUT_COMPLETED,
        SsoLogoutCompleted(
            request_id=rid,
            subject=ALICE,
            steps=(
                StepResult(
                    action="destroy_sso_session",
                    outcome=Outcome.SUCCEEDED,
                    started_at=now,
                    finished_at=now,
                    verification=Verification.VERIFIED,
                ),
            ),
        ),
    )
    await wait_until_async(lambda: status_is("completed"), 4, what="completed")
    view = await status()
    assert view["status"] == "completed"
    assert view["sso"]["steps"][0]["action"] == "destroy_sso_session"
    assert [t["event"] for t in view["timeline"]][-1] == "finished"
    finished = await redis.xrange(streams.REQUEST_FINISHED)
    assert len(finished) == 1 and finished[0][1][b"request_id"] == str(rid).encode()
    after = REGISTRY.get_sample_value(
        "sortie_request_duration_seconds_count", {"kind": "logout", "status": "completed"}
    )
    assert after == before + 1
    assert await redis.ttl(f"sortie:req:{{{rid}}}") > 0  # finished requests expire


async def test_deadline_loop_finishes_a_request_whose_workers_never_answer(
    client: httpx.AsyncClient,
):
    resp = await client.post(
        "/v1/logouts", json={"subject": {"user_id": "carol"}, "targets": ["m365"]}
    )
    rid = resp.json()["request_id"]

    # phase1 and sso timeouts are 2 s each in the test settings
    async def failed() -> dict | None:
        view = (await client.get(f"/v1/requests/{rid}")).json()
        return view if view["status"] == "failed" else None

    view = await wait_until_async(failed, 15, 0.05, "the request failed")
    assert view["services"]["m365"]["state"] == "timed_out"
    assert view["sso"]["state"] == "timed_out"
