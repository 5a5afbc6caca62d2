"""Run one revocation step: retries with backoff and jitter, timing, outcome, metrics.

Transient errors are retried (honouring a peer's Retry-After) up to a number of attempts;
permanent ones end the step at once. The result is always a `StepResult`: a step never
raises, so one user's failure never stops the handling of another's.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from .errors import NotFoundError, PermanentError, SortieError, TransientError
from .events import DeadLettered, Outcome, StepError, StepResult, utcnow
from .metrics import REVOCATION_DURATION, STEP_RETRIES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    base_s: float = 0.2
    max_s: float = 5.0
    # Never sleep longer than this for one Retry-After, whatever the peer says.
    retry_after_cap_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Delay before attempt `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        ceiling = min(self.max_s, self.base_s * (2 ** (attempt - 1)))
        # "Full jitter": spreads retries of many clients over the whole window.
        return random.uniform(0, ceiling)


class StepSkipped(Exception):
    """Raised by a step body to report `skipped` with a reason (e.g. not configured)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


Body = Callable[[], Awaitable[str | None]]


async def _call(body: Body) -> str | None:
    """A step's body; an error of Redis itself (a rate limiter's script, a lost
    connection) is transient: Redis comes back, the step is retried."""
    try:
        return await body()
    except RedisError as exc:
        raise TransientError(f"Redis: {type(exc).__name__}", code="redis_unavailable") from exc


async def run_step(
    service: str,
    action: str,
    body: Body,
    policy: RetryPolicy,
    *,
    metric_service: str | None = None,
) -> StepResult:
    """Run `body` until it succeeds, fails permanently or runs out of attempts.

    `body` returns an optional human detail for the report. `metric_service` lets a
    workstation agent report `workstation` instead of one label per host.
    """
    started = utcnow()
    attempts = 0
    outcome = Outcome.FAILED
    error: StepError | None = None
    detail: str | None = None
    while True:
        attempts += 1
        try:
            detail = await _call(body)
            outcome, error = Outcome.SUCCEEDED, None
            break
        except StepSkipped as skip:
            outcome, detail, error = Outcome.SKIPPED, skip.reason, None
            break
        except NotFoundError as exc:
            outcome, error = Outcome.NOT_FOUND, None
            detail = exc.message
            break
        except PermanentError as exc:
            outcome, error = Outcome.FAILED, StepError(code=exc.code, message=exc.message)
            break
        except TransientError as exc:
            error = StepError(code=exc.code, message=exc.message, retryable=True)
            if attempts >= policy.max_attempts:
                outcome = Outcome.FAILED
                break
            delay = policy.delay(attempts, exc.retry_after)
            STEP_RETRIES.labels(metric_service or service, action).inc()
            log.info(
                "step %s/%s attempt %d failed (%s), retrying in %.2fs",
                service,
                action,
                attempts,
                exc.code,
                delay,
            )
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except SortieError as exc:  # pragma: no cover - every subclass is handled above
            outcome, error = Outcome.FAILED, StepError(code=exc.code, message=exc.message)
            break
        except Exception as exc:
            # A bug or an untranslated vendor error: report it, do not crash the worker.
            log.exception("step %s/%s raised an unexpected error", service, action)
            outcome = Outcome.FAILED
            error = StepError(code="internal_error", message=type(exc).__name__)
            break
    finished = utcnow()
    result = StepResult(
        action=action,
        outcome=outcome,
        attempts=attempts,
        started_at=started,
        finished_at=finished,
        error=error,
        detail=detail,
    )
    REVOCATION_DURATION.labels(metric_service or service, action, outcome.value).observe(
        result.duration_seconds
    )
    return result


def skipped(action: str, reason: str) -> StepResult:
    now = utcnow()
    return StepResult(
        action=action,
        outcome=Outcome.SKIPPED,
        attempts=0,
        started_at=now,
        finished_at=now,
        detail=reason,
    )


def deadlettered(action: str, record: DeadLettered) -> StepResult:
    """The step of a command the broker gave up on: failed, so its request still ends."""
    now = utcnow()
    return StepResult(
        action=action,
        outcome=Outcome.FAILED,
        attempts=record.deliveries,
        started_at=now,
        finished_at=now,
        error=StepError(
            code="deadlettered",
            message=f"command given up after {record.deliveries} deliveries ({record.reason})",
        ),
    )
