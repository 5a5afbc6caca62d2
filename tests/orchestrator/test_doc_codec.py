"""Finished requests are compacted in Redis and read back whole (doc_codec.py), on a real
redis-server through the saga store the orchestrator uses."""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from sortie_core.events import (
    Discovery,
    Evidence,
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoSession,
    StepItem,
    StepResult,
    Subject,
    Target,
    Verification,
)
from sortie_orchestrator import handlers
from sortie_orchestrator.adapters import doc_codec
from sortie_orchestrator.adapters.saga_store import SagaStore, req_key
from sortie_orchestrator.bootstrap import make_deps
from sortie_orchestrator.saga import SagaState, Timeouts

SUBJECT = Subject(user_id="jdupont", upn="jean.dupont@lycee.example", cas_username="jdupont")


def _step(action: str, verification: Verification, source: str, **observed: object) -> StepResult:
    now = datetime.now(UTC)
    return StepResult(
        action=action,
        outcome=Outcome.SUCCEEDED,
        started_at=now,
        finished_at=now + timedelta(milliseconds=37),
        attempts=2,
        verification=verification,
        evidence=Evidence(source=source, observed=observed, read_at=now),  # type: ignore[arg-type]
        items=(StepItem(ref="1:esper.example:abcdef012345", outcome=Outcome.SUCCEEDED),),
    )


@pytest.fixture
def deps(redis: Redis) -> handlers.Deps:
    return make_deps(
        redis,
        SagaStore(redis, retention_s=3600, idempotency_ttl_s=3600),
        Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60)),
    )


async def _doc(redis: Redis, rid: uuid.UUID) -> bytes:
    raw = await redis.hget(req_key(rid), "doc")  # type: ignore[misc]
    assert isinstance(raw, bytes)
    return raw


async def test_a_finished_request_is_compacted_and_read_back_whole(
    deps: handlers.Deps, redis: Redis
) -> None:
    _, rid = await handlers.accept_logout(
        deps,
        subject=SUBJECT,
        reason="user_logout",
        targets=[Target.M365, Target.ENT],
        sso_session=SsoSession(tgt="TGT-1-codec-test"),
        idempotency_key=None,
        principal="ent",
    )
    # In flight: plain JSON, read and rewritten at every report.
    assert (await _doc(redis, rid)).startswith(b"{")
    m365 = _step(
        "revoke_sessions",
        Verification.VERIFIED,
        "graph GET /users/{id}?$select=signInSessionsValidFromDateTime",
        signInSessionsValidFromDateTime="2026-12-01T10:00:00Z",
    )
    await handlers.on_revocation(
        deps,
        RevocationCompleted(
            request_id=rid,
            subject=SUBJECT,
            service="m365",
            steps=(m365,),
            discovery=Discovery(
                source="graph", identity="oid jean.dupont", identity_tried=("upn",)
            ),
        ),
    )
    slo = _step("app_logout:esper", Verification.ACKNOWLEDGED, "POST logoutRequest", status=200)
    await handlers.on_revocation(
        deps, RevocationCompleted(request_id=rid, subject=SUBJECT, service="ent", steps=(slo,))
    )
    before = (await deps.store.load(rid)).state  # type: ignore[union-attr]
    sso = _step("destroy_sso_session", Verification.VERIFIED, "cas ssoSessions", tgt_known=False)
    await handlers.on_sso_completed(
        deps, SsoLogoutCompleted(request_id=rid, subject=SUBJECT, steps=(sso,))
    )

    stored = await _doc(redis, rid)
    loaded = await deps.store.load(rid)
    assert loaded is not None and loaded.state.status == "completed"
    state = loaded.state
    # Compacted: a version byte, then far fewer bytes than the JSON of the same state.
    assert stored[:1] == b"\x01"
    assert len(stored) * 4 < len(state.model_dump_json())
    # Nothing lost: the steps, their evidence, items and timings, the discovery.
    assert state.services["m365"].steps == [m365]
    assert state.services["m365"].discovery == before.services["m365"].discovery
    assert state.services["ent"].steps == [slo]
    assert state.sso is not None and state.sso.steps == [sso]
    assert state.timeline[-1].event == "finished"
    assert doc_codec.decode(doc_codec.encode(state)) == state


async def test_a_doc_written_as_json_still_reads(deps: handlers.Deps, redis: Redis) -> None:
    """Requests finished before compaction existed (plain JSON docs) stay readable."""
    _, rid = await handlers.accept_logout(
        deps,
        subject=SUBJECT,
        reason="user_logout",
        targets=[Target.M365],
        sso_session=None,
        idempotency_key=None,
        principal="ent",
    )
    state = (await deps.store.load(rid)).state  # type: ignore[union-attr]
    finished = state.model_copy(update={"status": "completed"})
    await redis.hset(req_key(rid), "doc", finished.model_dump_json())  # type: ignore[misc]
    loaded = await deps.store.load(rid)
    assert loaded is not None and loaded.state == finished


def test_an_altered_compacted_doc_is_refused() -> None:
    state_json = {
        "request_id": str(uuid.uuid4()),
        "kind": "logout",
        "status": "completed",
        "subject": SUBJECT.model_dump(),
        "reason": "x",
        "created_at": datetime.now(UTC).isoformat(),
    }
    blob = doc_codec.encode(SagaState.model_validate(state_json))
    with pytest.raises((zlib.error, ValueError)):
        doc_codec.decode(blob[:1] + bytes([blob[1] ^ 0xFF]) + blob[2:-3])
