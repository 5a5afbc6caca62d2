"""What follow-up delivery asks of a step, for phase 0 (followup.py) and the later phases
(phase_followup.py) alike: whether it is worth sending again, whether a report's step is
news, which record a retried step keeps, and when to send again. Pure functions; this
module imports nothing of the saga, so `phases` and `state` can both use it."""

from __future__ import annotations

import random
from collections.abc import Iterable
from datetime import timedelta

from sortie_core.events import Outcome, SkipReason, StepResult, Verification


def backoff(key: str, attempt: int, base: timedelta, maximum: timedelta) -> timedelta:
    """Exponential backoff with full jitter, deterministic per `key` and attempt, so
    that a replayed transition computes the same schedule."""
    ceiling = min(maximum.total_seconds(), base.total_seconds() * (2 ** max(0, attempt - 1)))
    rng = random.Random(f"{key}:{attempt}")
    return timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


def retry_after(steps: Iterable[StepResult]) -> timedelta:
    """The longest `Retry-After` the steps' errors asked for (0 without one)."""
    waits = [s.error.retry_after_s for s in steps if s.error and s.error.retry_after_s]
    return timedelta(seconds=max(waits)) if waits else timedelta(0)


def retryable(step: StepResult) -> bool:
    """Worth sending again: not proven, and failed for a reason that can pass."""
    if step.done:
        return False
    if step.outcome in (Outcome.TIMED_OUT, Outcome.UNREACHABLE):
        return True
    if step.outcome == Outcome.SUCCEEDED:
        return step.verification in (Verification.UNVERIFIED, None)
    return step.outcome == Outcome.FAILED and step.error is not None and step.error.retryable


def news(step: StepResult) -> bool:
    """A step that says "not asked" (a follow-up for other actions) is never news."""
    return not (
        step.outcome == Outcome.SKIPPED and step.skip_reason == SkipReason.ACTION_NOT_SELECTED
    )


def first_record(old: StepResult, new: StepResult) -> StepResult:
    """`new`, with what the first attempt recorded: the state before any change (which a
    reversal restores), not the state a retry found after it."""
    if old.recorded and new.recorded != old.recorded:
        return new.model_copy(update={"recorded": old.recorded})
    return new
