"""A person's order to retry the failed steps of a finished request, now.

It goes through the follow-up delivery (followup.py): each service with a step that is
not proven gets a follow-up due now, for those actions only (every action when the
service never reported), and the commands go out in the same transition. Unlike the
automatic follow-up, a permanent error is sent again too (someone may have fixed the
cause); a report then heals the request or leaves it as it is. The horizon restarts.
"""

from __future__ import annotations

from datetime import datetime

from sortie_core.events import Outcome
from sortie_orchestrator.saga.state import (
    FollowUp,
    SagaState,
    ServiceState,
    Timeouts,
    Transition,
    all_services,
    note,
)
from sortie_orchestrator.saga.transitions import follow_up

RETRYABLE_STATUSES = ("partial", "failed")
_PLACEHOLDERS = (Outcome.TIMED_OUT, Outcome.UNREACHABLE)


def failed_actions(svc: ServiceState) -> list[str] | None:
    """None: nothing failed; []: every action (never reported); else the failed ones."""
    failed = [s for s in svc.steps if not s.done]
    if not failed:
        return None
    if any(s.outcome in _PLACEHOLDERS for s in failed):
        return []
    return [s.action for s in failed]


def retry(state: SagaState, now: datetime, timeouts: Timeouts, who: str) -> Transition | None:
    """None when there is nothing to retry (not finished, cancelled, completed)."""
    if state.status not in RETRYABLE_STATUSES:
        return None
    state = state.model_copy(deep=True)
    for name, svc in all_services(state).items():
        actions = failed_actions(svc)
        if actions is None:
            continue
        current = state.followups.get(name)
        state.followups[name] = FollowUp(
            attempt=current.attempt if current else 0,
            next_at=now,
            actions=actions,
            last_error=current.last_error if current else None,
        )
    if not state.followups:
        return None
    state.followup_until = now + timeouts.followup_horizon
    note(state, now, "retry_requested", who[:200])
    return follow_up(Transition(state), now, timeouts)
