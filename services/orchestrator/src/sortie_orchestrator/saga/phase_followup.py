"""Follow-up delivery for the later phases of a profile (phases.py), as followup.py does
for phase 0: a later phase that ended `partial` or `failed` because a step failed for a
transient reason (an error marked retryable, a timeout, a read-back that could not be
made) is not given up. Each service with such a step gets its phase command sent again,
for those actions only, with exponential backoff and jitter (honouring a peer's
Retry-After), until the horizon (`Timeouts.followup_horizon` from the phase's end). A
report that proves every step heals the phase: `completed` with `healed_at`.

The schedule is part of the phase's state and its next attempt is the request's next
deadline in the polled set, so any replica sends it once, after a restart too. A phase
that has just ended is due at once: the deadline loop then schedules its first attempt
(the backoff is in `Timeouts`, which the report handler does not hold).

Pure functions like the saga; they do no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from sortie_core import streams
from sortie_core.events import FollowUpScope, OffboardRequested, StepResult, Subject
from sortie_orchestrator.saga.retrying import backoff, first_record, news, retry_after, retryable

if TYPE_CHECKING:
    from sortie_orchestrator.saga import Timeouts
    from sortie_orchestrator.saga.phases import PhaseService, PhaseState

CommandFor = tuple[object, Subject, str, str, str | None]


class FollowUp(BaseModel):
    """The next delivery of one service's unfinished actions of a later phase (as
    `state.FollowUp` is for phase 0)."""

    model_config = ConfigDict(extra="ignore")

    attempt: int = 0
    next_at: datetime
    # The actions to send again; empty: every action of the phase (the service was silent).
    actions: list[str]
    last_error: str | None = None


_ENDED = ("partial", "failed")


def pending_actions(svc: PhaseService) -> list[str] | None:
    """None: nothing to follow up; []: every action (the service never reported); else
    the actions to send again."""
    pending = [s for s in svc.steps if retryable(s)]
    if not pending:
        return None
    if svc.state == "timed_out":
        return []
    return [s.action for s in pending]


def _unscheduled(phase: PhaseState) -> bool:
    """Ended with something worth retrying, and no follow-up planned yet."""
    return (
        phase.status in _ENDED
        and phase.followup_until is None
        and any(pending_actions(s) is not None for s in phase.services.values())
    )


def next_at(phase: PhaseState) -> datetime | None:
    if _unscheduled(phase):
        return phase.finished_at
    return min((f.next_at for f in phase.followups.values()), default=None)


def _delay(key: str, attempt: int, timeouts: Timeouts) -> timedelta:
    """Per request, phase and service (`key`) and attempt."""
    return backoff(key, attempt, timeouts.followup_base, timeouts.followup_max)


def _last_error(svc: PhaseService) -> str | None:
    for step in svc.steps:
        if retryable(step):
            return step.error.code if step.error else (step.verification or step.outcome).value
    return None


def _schedule(phase: PhaseState, request_id: object, now: datetime, timeouts: Timeouts) -> None:
    ended = phase.finished_at or now
    for name, svc in phase.services.items():
        actions = pending_actions(svc)
        if actions is None:
            continue
        delay = max(
            _delay(f"{request_id}:{phase.index}:{name}", 1, timeouts), retry_after(svc.steps)
        )
        phase.followups[name] = FollowUp(
            next_at=ended + delay, actions=actions, last_error=_last_error(svc)
        )
    phase.followup_until = ended + timeouts.followup_horizon


def command(
    phase: PhaseState,
    request_id: object,
    subject: Subject,
    reason: str,
    requested_by: str,
    profile: str | None,
    now: datetime,
    *,
    deadline: datetime | None = None,
    followup: FollowUpScope | None = None,
) -> OffboardRequested:
    """The phase's offboard.requested (a follow-up's, with its own deadline and scope)."""
    deadline = deadline or phase.deadline
    assert deadline is not None
    return OffboardRequested.model_validate(
        {
            "request_id": request_id,
            "subject": subject,
            "reason": reason,
            "requested_by": requested_by,
            "actions": tuple(phase.actions),
            "deadline": deadline,
            "occurred_at": now,
            "profile": profile,
            "phase": phase.index,
            "options": phase.options,
            "followup": followup,
        }
    )


def _command(
    phase: PhaseState, name: str, taken: FollowUp, command_for: CommandFor, now: datetime,
    timeouts: Timeouts,
) -> OffboardRequested:  # fmt: skip
    scope = FollowUpScope(services=(name,), actions=tuple(taken.actions), attempt=taken.attempt)
    return command(phase, *command_for, now, deadline=now + timeouts.phase1, followup=scope)


def run(
    phases: list[PhaseState], now: datetime, timeouts: Timeouts, command_for: CommandFor
) -> tuple[list[tuple[str, OffboardRequested, str]], list[str], bool]:
    """Plan the follow-ups of phases that just ended, and send those due: (commands to
    send with their timeline detail, the follow-ups given up, whether anything changed)."""
    sent: list[tuple[str, OffboardRequested, str]] = []
    given_up: list[str] = []
    changed = False
    for phase in phases:
        if _unscheduled(phase):
            _schedule(phase, command_for[0], now, timeouts)
            changed = True
        for name in sorted(n for n, f in phase.followups.items() if f.next_at <= now):
            changed = True
            if phase.followup_until is not None and now > phase.followup_until:
                del phase.followups[name]
                given_up.append(f"{name} (phase {phase.index})")
                continue
            taken = phase.followups[name]
            taken.attempt += 1
            key = f"{command_for[0]}:{phase.index}:{name}"
            wait = _delay(key, taken.attempt + 1, timeouts)
            taken.next_at = now + max(wait, timedelta(seconds=1))
            command = _command(phase, name, taken, command_for, now, timeouts)
            detail = f"{name} (phase {phase.index}) attempt {taken.attempt}"
            sent.append((streams.OFFBOARD_REQUESTED, command, detail))
    return sent, given_up, changed


def merge(svc: PhaseService, steps: list[StepResult]) -> None:
    """A follow-up's report replaces the steps it names (keeping what the first attempt
    recorded: the state before any change, which a reversal restores) and adds others."""
    before = {s.action: s for s in svc.steps if svc.state != "timed_out"}
    merged: dict[str, StepResult] = dict(before)
    for step in steps:
        if not news(step) and step.action in before:
            continue
        old = before.get(step.action)
        merged[step.action] = first_record(old, step) if old is not None else step
    svc.steps = list(merged.values())
    svc.state = "reported"


def on_report(phase: PhaseState, service: str, steps: list[StepResult], now: datetime) -> None:
    """A follow-up's report: merged; the phase heals when every step is proven."""
    svc = phase.services[service]
    merge(svc, steps)
    svc.reported_at = now
    actions = pending_actions(svc)
    if actions is None:
        phase.followups.pop(service, None)
    elif service in phase.followups:
        phase.followups[service].actions = actions
    all_steps = [s for v in phase.services.values() for s in v.steps]
    proven = [s for s in all_steps if s.done]
    if all_steps and len(proven) == len(all_steps):
        phase.status = "completed"
        phase.healed_at = now
        phase.followups = {}
    elif proven:
        phase.status = "partial"
