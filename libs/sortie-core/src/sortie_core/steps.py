"""Run one revocation step: retries with backoff and jitter, timing, outcome, read-back
proof, metrics.

Transient errors are retried (honouring a peer's Retry-After) up to a number of attempts;
permanent ones end the step at once. After a success, the step's post-condition is read
back from the system itself when the caller gives a `verify` (a few times: directories
are eventually consistent); without one, the peer's answer is the evidence
(`acknowledged`). The result is always a `StepResult`: a step never raises, so one user's
failure never stops the handling of another's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from .errors import NotFoundError, PermanentError, SortieError, TransientError
from .events import (
    DeadLettered,
    Evidence,
    Outcome,
    SkipReason,
    StepError,
    StepResult,
    Verification,
    utcnow,
)
from .metrics import REVOCATION_DURATION, STEP_RETRIES, VERIFICATIONS

if TYPE_CHECKING:
    from .settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    base_s: float = 0.2
    max_s: float = 5.0
    # Never sleep longer than this for one Retry-After, whatever the peer says.
    retry_after_cap_s: float = 60.0
    # Read-backs of the post-condition before it is called contradicted or unverified.
    verify_attempts: int = 4
    verify_delay_s: float = 0.25

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Delay before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        ceiling = min(self.max_s, self.base_s * (2 ** (attempt - 1)))
        # "Full jitter": spreads retries of many clients over the whole window.
        return random.uniform(0, ceiling)

    @classmethod
    def of(cls, settings: WorkerSettings) -> RetryPolicy:
        """The step retries a service's settings ask for (`SORTIE_*_STEP_*`)."""
        return cls(
            max_attempts=settings.step_max_attempts,
            base_s=settings.step_backoff_base_s,
            max_s=settings.step_backoff_max_s,
        )


class StepSkipped(Exception):
    """Raised by a step body to report `skipped` with a reason. `why` says whether the skip
    is a policy (done) or something missing (`not_configured`: not done)."""

    def __init__(self, reason: str, why: SkipReason = SkipReason.NOT_CONFIGURED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.why = why


class Contradicted(Exception):
    """Raised by a `verify` read-back whose post-condition does not hold."""

    def __init__(self, message: str, evidence: Evidence) -> None:
        super().__init__(message)
        self.message = message
        self.evidence = evidence


Body = Callable[[], Awaitable[str | None]]
Verify = Callable[[], Awaitable[Evidence]]


@dataclass(frozen=True, slots=True)
class Proof:
    verification: Verification
    evidence: Evidence | None = None
    error: StepError | None = None


async def read_back(verify: Verify, policy: RetryPolicy) -> Proof:
    """Read the post-condition until it holds, or give the last contradiction or error."""
    last = Proof(Verification.UNVERIFIED)
    for attempt in range(1, max(1, policy.verify_attempts) + 1):
        try:
            return Proof(Verification.VERIFIED, await verify())
        except Contradicted as exc:
            last = Proof(
                Verification.CONTRADICTED,
                exc.evidence,
                StepError(code="not_verified", message=exc.message),
            )
        except asyncio.CancelledError:
            raise
        except SortieError as exc:
            last = Proof(
                Verification.UNVERIFIED,
                None,
                StepError(code="unverified", message=f"read-back failed: {exc.message}"),
            )
        except Exception as exc:
            log.exception("read-back raised an unexpected error")
            last = Proof(
                Verification.UNVERIFIED,
                None,
                StepError(code="unverified", message=f"read-back failed: {type(exc).__name__}"),
            )
        if attempt < policy.verify_attempts:
            await asyncio.sleep(policy.verify_delay_s * attempt)
    return last


async def _in_effect(verify: Verify) -> Evidence | None:
    """The post-condition read once, before acting: its evidence when it already holds."""
    try:
        return await verify()
    except asyncio.CancelledError:
        raise
    except Exception:  # contradicted, or unreadable: act as usual
        return None


async def _call(body: Body) -> str | None:
    """A step's body; an error of Redis itself (a rate limiter's script, a lost
    connection) is transient: Redis comes back, the step is retried."""
    try:
        return await body()
    except RedisError as exc:
        raise TransientError(f"Redis: {type(exc).__name__}", code="redis_unavailable") from exc


@dataclass(slots=True)
class _Tried:
    """How a step's body ended: its outcome before the read-back."""

    outcome: Outcome
    error: StepError | None = None
    detail: str | None = None
    proof: Proof | None = None
    skip_reason: SkipReason | None = None
    attempts: int = 0


async def _attempt(service: str, action: str, body: Body) -> _Tried | TransientError:
    """One call of the body: how it ended, or the transient error to retry after."""
    try:
        return _Tried(Outcome.SUCCEEDED, detail=await _call(body))
    except StepSkipped as skip:
        return _Tried(Outcome.SKIPPED, detail=skip.reason, skip_reason=skip.why)
    except NotFoundError as exc:
        found = exc.evidence if isinstance(exc.evidence, Evidence) else None
        proof = Proof(Verification.VERIFIED, found) if found is not None else None
        return _Tried(Outcome.NOT_FOUND, detail=exc.message, proof=proof)
    except PermanentError as exc:
        return _Tried(Outcome.FAILED, StepError(code=exc.code, message=exc.message))
    except TransientError as exc:
        return exc
    except asyncio.CancelledError:
        raise
    except SortieError as exc:  # pragma: no cover - every subclass is handled above
        return _Tried(Outcome.FAILED, StepError(code=exc.code, message=exc.message))
    except Exception as exc:
        # A bug or an untranslated vendor error: report it, do not crash the worker.
        log.exception("step %s/%s raised an unexpected error", service, action)
        return _Tried(Outcome.FAILED, StepError(code="internal_error", message=type(exc).__name__))


async def _until_done(
    service: str, action: str, body: Body, policy: RetryPolicy, label: str
) -> _Tried:
    """Call the body until it succeeds, fails permanently or runs out of attempts."""
    attempts = 0
    while True:
        attempts += 1
        tried = await _attempt(service, action, body)
        if isinstance(tried, _Tried):
            tried.attempts = attempts
            return tried
        exc = tried
        error = StepError(
            code=exc.code,
            message=exc.message,
            retryable=True,
            retry_after_s=exc.retry_after,
        )
        if attempts >= policy.max_attempts:
            return _Tried(Outcome.FAILED, error, attempts=attempts)
        delay = policy.delay(attempts, exc.retry_after)
        STEP_RETRIES.labels(label, action).inc()
        log.info(
            "step %s/%s attempt %d failed (%s), retrying in %.2fs",
            service,
            action,
            attempts,
            exc.code,
            delay,
        )
        await asyncio.sleep(delay)


async def run_step(
    service: str,
    action: str,
    body: Body,
    policy: RetryPolicy,
    *,
    metric_service: str | None = None,
    verify: Verify | None = None,
    verify_first: bool = False,
) -> StepResult:
    """Run `body` until it succeeds, fails permanently or runs out of attempts, then read
    its post-condition back with `verify` (None: the peer's answer is the evidence).

    `body` returns an optional human detail for the report. `metric_service` lets a
    workstation agent report `workstation` instead of one label per host. With
    `verify_first` (a follow-up: the first command may have been carried out meanwhile),
    a post-condition that already holds is reported verified without acting again, so an
    effect is not repeated (nor Graph's write quota spent twice).
    """
    started = utcnow()
    label = metric_service or service
    if verify is not None and verify_first and (evidence := await _in_effect(verify)):
        VERIFICATIONS.labels(label, Verification.VERIFIED.value).inc()
        return StepResult(
            action=action,
            outcome=Outcome.SUCCEEDED,
            attempts=0,
            started_at=started,
            finished_at=utcnow(),
            detail="already in effect (read back before acting)",
            verification=Verification.VERIFIED,
            evidence=evidence,
        )
    tried = await _until_done(service, action, body, policy, label)
    outcome, error, proof = tried.outcome, tried.error, tried.proof
    if outcome == Outcome.SUCCEEDED:
        proof = await read_back(verify, policy) if verify else Proof(Verification.ACKNOWLEDGED)
        if proof.verification == Verification.CONTRADICTED:
            outcome = Outcome.FAILED
        error = proof.error
    if proof is not None:
        VERIFICATIONS.labels(label, proof.verification.value).inc()
    return ended(
        action,
        outcome,
        attempts=tried.attempts,
        started_at=started,
        error=error,
        detail=tried.detail,
        verification=proof.verification if proof else None,
        evidence=proof.evidence if proof else None,
        skip_reason=tried.skip_reason,
        observed_by=label,
    )


def ended(
    action: str,
    outcome: Outcome,
    *,
    attempts: int = 0,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    error: StepError | None = None,
    detail: str | None = None,
    verification: Verification | None = None,
    evidence: Evidence | None = None,
    skip_reason: SkipReason | None = None,
    observed_by: str | None = None,
) -> StepResult:
    """A step that ends now, or at `finished_at` (started then unless `started_at`).
    `observed_by`: the service whose `sortie_revocation_duration_seconds` counts it."""
    now = finished_at or utcnow()
    result = StepResult(
        action=action,
        outcome=outcome,
        attempts=attempts,
        started_at=started_at or now,
        finished_at=now,
        error=error,
        detail=detail,
        verification=verification,
        evidence=evidence,
        skip_reason=skip_reason,
    )
    if observed_by is not None:
        REVOCATION_DURATION.labels(observed_by, action, outcome.value).observe(
            result.duration_seconds
        )
    return result


def skipped(action: str, reason: str, why: SkipReason) -> StepResult:
    return ended(action, Outcome.SKIPPED, detail=reason, skip_reason=why)


def deadlettered(action: str, record: DeadLettered) -> StepResult:
    """The step of a command the broker gave up on: failed, so its request still ends."""
    return ended(
        action,
        Outcome.FAILED,
        attempts=record.deliveries,
        error=StepError(
            code="deadlettered",
            message=f"command given up after {record.deliveries} deliveries ({record.reason})",
        ),
    )
