"""Follow-up delivery: what the phase-1 deadline did not finish is not given up.

The deadline decides when the SSO logout goes out (the SSO session must not wait for a
dead application); it does not end the work. When a request ends `partial` or `failed`,
every service with a step that failed for a transient reason (an error marked retryable,
a timeout, a read-back that could not be made) gets a follow-up: its command is sent
again, for those actions only, with exponential backoff and jitter (honouring a peer's
Retry-After) until the horizon. A report that proves the remaining steps heals the
request: it becomes `completed` with `healed_at`. The SSO logout is followed up the same
way: an alive SSO session is the worst outcome.

Pure functions like the saga: the follow-up schedule is part of the request's state, and
its next attempt is the request's next deadline in the polled set, so any replica fires it
once and a restart loses nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sortie_core.events import Outcome, StepResult
from sortie_orchestrator.saga.retrying import backoff, first_record, retry_after, retryable
from sortie_orchestrator.saga.retrying import news as _news
from sortie_orchestrator.saga.state import (
    FollowUp,
    SagaState,
    ServiceState,
    Timeouts,
    all_services,
)

__all__ = ["FollowUp", "advance", "due", "merge", "retryable", "schedule"]

SSO = "sso"


_PLACEHOLDERS = (Outcome.TIMED_OUT, Outcome.UNREACHABLE)


def _pending_actions(svc: ServiceState) -> list[str] | None:
    """None: nothing to follow up; []: everything (the service never reported, its
    steps are the orchestrator's placeholders); else the actions to send again."""
    pending = [s for s in svc.steps if retryable(s)]
    if not pending:
        return None
    if any(s.outcome in _PLACEHOLDERS for s in pending):
        return []
    return [s.action for s in pending]


def _delay(state: SagaState, service: str, attempt: int, timeouts: Timeouts) -> timedelta:
    key = f"{state.request_id}:{service}"
    return backoff(key, attempt, timeouts.followup_base, timeouts.followup_max)


def schedule(state: SagaState, now: datetime, timeouts: Timeouts) -> None:
    """At the end of a request (and after each report): follow up what is still open."""
    for name, svc in all_services(state).items():
        actions = _pending_actions(svc)
        current = state.followups.get(name)
        if actions is None:
            state.followups.pop(name, None)
            continue
        if current is None:
            delay = max(_delay(state, name, 1, timeouts), retry_after(svc.steps))
            state.followups[name] = FollowUp(
                next_at=now + delay, actions=actions, last_error=_last_error(svc)
            )
        else:
            current.actions = actions
            current.last_error = _last_error(svc)
    if state.followups and state.followup_until is None:
        state.followup_until = now + timeouts.followup_horizon


def _last_error(svc: ServiceState) -> str | None:
    for step in svc.steps:
        if retryable(step):
            return step.error.code if step.error else (step.verification or step.outcome).value
    return None


def due(state: SagaState, now: datetime) -> list[str]:
    return sorted(name for name, f in state.followups.items() if f.next_at <= now)


def advance(
    state: SagaState, name: str, now: datetime, timeouts: Timeouts
) -> tuple[FollowUp | None, bool]:
    """Take the follow-up of `name` for sending now: (it, True), or (None, False) when
    the horizon has passed (it is dropped and the request stays as it is)."""
    followup = state.followups[name]
    if state.followup_until is not None and now > state.followup_until:
        del state.followups[name]
        return None, False
    followup.attempt += 1
    delay = max(_delay(state, name, followup.attempt + 1, timeouts), timedelta(seconds=1))
    followup.next_at = now + delay
    return followup, True


def merge(svc: ServiceState, steps: tuple[StepResult, ...]) -> None:
    """A later report replaces the steps it names and adds the others."""
    # The orchestrator's own placeholders (a service timed out, a host unreachable) give
    # way to any real report.
    kept = [s for s in svc.steps if s.outcome not in _PLACEHOLDERS] if steps else svc.steps
    known = {s.action for s in kept}
    by_action = {s.action: s for s in steps if _news(s) or s.action not in known}
    merged = [first_record(s, by_action.pop(s.action, s)) for s in kept]
    svc.steps = merged + list(by_action.values())
