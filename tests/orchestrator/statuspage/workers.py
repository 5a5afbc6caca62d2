"""The test plays the workers of a real orchestrator: it writes an agent's presence and
puts the reports of Microsoft 365, the ENT, a workstation agent and the SSO logout on the
streams they use, when the test wants, so that a page can be watched step by step."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from sortie_core import streams
from sortie_core.broker import publish
from sortie_core.events import (
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    StepError,
    StepResult,
    Subject,
    Verification,
)
from sortie_core.presence import PresenceRecord, wake, write_presence


def step(action: str, verification: Verification = Verification.VERIFIED) -> StepResult:
    now = datetime.now(UTC)
    return StepResult(
        action=action,
        outcome=Outcome.SUCCEEDED,
        started_at=now,
        finished_at=now,
        verification=verification,
    )


def failed(action: str, code: str = "forbidden", retryable: bool = False) -> StepResult:
    """A step that failed (by default for good: a 403 from the peer)."""
    now = datetime.now(UTC)
    return StepResult(
        action=action,
        outcome=Outcome.FAILED,
        started_at=now,
        finished_at=now,
        error=StepError(code=code, message=f"{code} from the peer", retryable=retryable),
    )


async def sits_at(redis: Redis, host: str, account: str) -> None:
    """The agent of `host` says `account` has a session there."""
    record = PresenceRecord(
        host=host,
        version="test",
        users=frozenset({account}),
        heartbeat_at=datetime.now(UTC).timestamp(),
        heartbeat_s=600,
    )
    await write_presence(redis, record)
    await wake(redis, host, "presence")


async def report(redis: Redis, rid: uuid.UUID, subject: Subject, service: str) -> None:
    if service == "m365":
        steps = (step("revoke_sessions"),)
    elif service == "ent":
        steps = (
            step("app_logout:esper", Verification.ACKNOWLEDGED),
            step("app_logout:mer", Verification.ACKNOWLEDGED),
        )
    else:
        # A shared station's agent closes the browsers, then logs the session off.
        host = service.split(":", 1)[1]
        event = RevocationCompleted(
            request_id=rid,
            subject=subject,
            service=service,
            steps=(step("close_browsers"), step("logoff")),
        )
        await publish(redis, streams.agent_results_stream(host), event)
        await wake(redis, host, "results")
        return
    event = RevocationCompleted(request_id=rid, subject=subject, service=service, steps=steps)
    await publish(redis, streams.REVOCATION_COMPLETED, event)


async def sso_report(redis: Redis, rid: uuid.UUID, subject: Subject) -> None:
    event = SsoLogoutCompleted(
        request_id=rid, subject=subject, steps=(step("destroy_sso_session"),)
    )
    await publish(redis, streams.SSO_LOGOUT_COMPLETED, event)
