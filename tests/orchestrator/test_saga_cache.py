"""The store starts a transition from the doc its process wrote last, without reading it
back: safe only because the compare-and-set proves it current. Two replicas on one
real redis-server: a stale copy never wins, and "nothing to do" judged on a stale copy is
judged again on Redis's doc."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.events import (
    Outcome,
    SsoLogoutCompleted,
    StepResult,
    Target,
    Verification,
)
from sortie_orchestrator import handlers
from sortie_orchestrator.saga import SagaState, Transition
from tests.core.roundtrips import counted
from tests.orchestrator.test_replicas import ALICE, deps_for, report
from tests.orchestrator.test_report_cost import LOGOUT


def _renamed(reason: str):  # a transition another replica makes: a new reason
    def step(state: SagaState) -> Transition:
        state = state.model_copy(deep=True)
        state.reason = reason
        return Transition(state)

    return step


async def test_a_stale_copy_loses_its_compare_and_set_and_is_read_again(
    redis: Redis, redis_server
) -> None:
    a, b = deps_for(redis_server.url), deps_for(redis_server.url)
    _, rid = await handlers.accept_logout(a, targets=[Target.M365, Target.ENT], **LOGOUT)
    # B reports m365 (A's copy is now one version behind), then A gets the same report.
    await handlers.on_revocation(b, report(rid, "m365"))
    with counted(a.store.redis) as made:
        await handlers.on_revocation(a, report(rid, "m365"))
    # A tried its copy, lost, read Redis's doc, and found the report already taken.
    assert made.commands() == ["EVALSHA", "HMGET"]
    loaded = await a.store.load(rid)
    assert loaded is not None and loaded.version == 2
    assert [n.event for n in loaded.state.timeline].count("service_reported") == 1
    # Then ent, on A: the SSO logout goes out once, from A's now current copy.
    await handlers.on_revocation(a, report(rid, "ent"))
    assert await redis.xlen(streams.SSO_LOGOUT_REQUESTED) == 1
    for deps in (a, b):
        await deps.store.redis.aclose()


async def test_nothing_to_do_on_a_stale_copy_is_judged_again_on_redis(
    redis: Redis, redis_server
) -> None:
    a, b = deps_for(redis_server.url), deps_for(redis_server.url)
    _, rid = await handlers.accept_logout(a, targets=[Target.M365], **LOGOUT)
    await b.store.apply(rid, _renamed("moved on by b"))

    def only_after_b(state: SagaState) -> Transition | None:
        return _renamed("then a")(state) if state.reason == "moved on by b" else None

    # On A's own copy there is nothing to do; on Redis's doc there is.
    assert await a.store.apply(rid, only_after_b) is not None
    loaded = await b.store.load(rid)
    assert loaded is not None and loaded.state.reason == "then a" and loaded.version == 3
    for deps in (a, b):
        await deps.store.redis.aclose()


async def test_a_request_is_kept_while_in_flight_and_dropped_once_finished(
    redis: Redis, redis_server
) -> None:
    a = deps_for(redis_server.url)
    _, rid = await handlers.accept_logout(a, targets=[Target.M365], **LOGOUT)
    with counted(a.store.redis) as made:
        await handlers.on_revocation(a, report(rid, "m365"))
    assert made.commands() == ["EVALSHA"]  # its own last write: no read back
    assert await redis.xlen(streams.SSO_LOGOUT_REQUESTED) == 1
    await handlers.on_sso_completed(a, sso_done(rid))
    loaded = await a.store.load(rid)
    assert loaded is not None and loaded.state.status == "completed"
    # A finished doc is stored compacted: the next transition reads Redis's.
    assert str(rid) not in a.store._docs
    await a.store.redis.aclose()


def sso_done(rid) -> SsoLogoutCompleted:
    now = datetime.now(UTC)
    step = StepResult(
        action="destroy_sso_session",
        outcome=Outcome.SUCCEEDED,
        started_at=now,
        finished_at=now,
        verification=Verification.VERIFIED,
    )
    return SsoLogoutCompleted(request_id=rid, subject=ALICE, steps=(step,))
