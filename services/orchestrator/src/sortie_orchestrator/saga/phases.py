"""The later phases of an offboarding profile (profiles.py): scheduled parts of the same
request, run after phase 0 (the saga) at their dates.

What the request's `status` means does not change: it is phase 0's, the saga's (access
ended everywhere and proven, the SSO session last): `completed`, `partial` or `failed`.
A later phase removes what no longer gives access (licences, groups, address-list
entries), so its outcome is its own, in `phases[i].status`: `scheduled` until its date,
`running`, then `completed` (every step proven), `partial` (some), `failed` (none), or
`cancelled` (DELETE /v1/requests/{id} before its date). A phase runs at its date, or when
the phase before it has finished if that is later; its date is the request's deadline in
the polled sorted set, so any replica fires it once, after a restart too. A phase that
ended `partial` or `failed` for a transient reason is followed up (phase_followup.py).

Pure functions like the saga: `saga` calls them; they do no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from sortie_core import services as services_
from sortie_core import streams
from sortie_core.events import (
    Kind,
    M365Action,
    OffboardRequested,
    Outcome,
    RevocationCompleted,
    StepError,
    StepResult,
    Subject,
)
from sortie_orchestrator.profiles import Profile
from sortie_orchestrator.saga import phase_followup
from sortie_orchestrator.saga.phase_followup import FollowUp, command
from sortie_orchestrator.saga.retrying import news as _news

PhaseStatus = Literal["scheduled", "running", "completed", "partial", "failed", "cancelled"]
_M365 = frozenset(a.value for a in M365Action)


class PhaseService(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: Literal["pending", "reported", "timed_out"] = "pending"
    steps: list[StepResult] = []
    reported_at: datetime | None = None


class PhaseState(BaseModel):
    """One later phase (index 1, 2, ...) of the request's profile."""

    model_config = ConfigDict(extra="ignore")

    index: int
    after_s: float
    actions: list[str]
    options: dict[str, dict[str, JsonValue]] = {}
    status: PhaseStatus = "scheduled"
    # When it is due: the start of phase 0 plus `after` (None until phase 0 started).
    at: datetime | None = None
    started_at: datetime | None = None
    deadline: datetime | None = None
    finished_at: datetime | None = None
    services: dict[str, PhaseService] = {}
    # Follow-up delivery after it ended (phase_followup.py), per service, until the horizon.
    followups: dict[str, FollowUp] = {}
    followup_until: datetime | None = None
    # When a phase that had ended `partial`/`failed` became `completed`.
    healed_at: datetime | None = None


def plan(profile: Profile) -> list[PhaseState]:
    return [
        PhaseState(
            index=i,
            after_s=phase.after.total_seconds(),
            actions=list(phase.actions),
            options=dict(phase.options),
        )
        for i, phase in enumerate(profile.phases)
        if i > 0
    ]


def date(phases: list[PhaseState], started_at: datetime) -> None:
    """Phase 0 started: each later phase's date follows from it."""
    for phase in phases:
        if phase.status == "scheduled":
            phase.at = started_at + timedelta(seconds=phase.after_s)


def _waiting(phases: list[PhaseState]) -> PhaseState | None:
    """The next phase to run: the first still scheduled, once every earlier one ended."""
    for phase in phases:
        if phase.status == "running":
            return None
        if phase.status == "scheduled":
            return phase
    return None


def next_at(phases: list[PhaseState]) -> datetime | None:
    """The next date a phase needs the deadline loop: a running one's deadline, or the
    next scheduled one's date. Only asked once phase 0 has finished."""
    running = [p.deadline for p in phases if p.status == "running" and p.deadline]
    waiting = _waiting(phases)
    dates = [*running, *(phase_followup.next_at(p) for p in phases)]
    if not running and waiting is not None:
        dates.append(waiting.at)
    return min((d for d in dates if d is not None), default=None)


def _services_for(actions: list[str]) -> list[str]:
    names = []
    if _M365 & set(actions):
        names.append(services_.M365)
    if {services_.EntAction.APP_LOGOUT.value, services_.EntAction.DISABLE_ACCOUNT.value} & set(
        actions
    ):
        names.append(services_.ENT)
    return names


def start_due(
    phases: list[PhaseState],
    now: datetime,
    timeout: timedelta,
    command_for: tuple[object, Subject, str, str, str | None],
) -> list[tuple[str, OffboardRequested, str]]:
    """Start the phase whose date has come: (stream, command, timeline detail) to send."""
    phase = _waiting(phases)
    if phase is None or phase.at is None or phase.at > now:
        return []
    phase.status = "running"
    phase.started_at = now
    phase.deadline = now + timeout
    phase.services = {name: PhaseService() for name in _services_for(phase.actions)}
    sent = command(phase, *command_for, now)
    return [(streams.OFFBOARD_REQUESTED, sent, f"phase {phase.index}")]


def _base(action: str) -> str:
    return action.split(":", 1)[0]


def owner(phases: list[PhaseState], event: RevocationCompleted) -> PhaseState | None:
    """The phase this report is for: running and waiting for the service, or following
    it up; and the report names one of its actions (not as "not selected": a worker
    reports the default actions so; phase 0's follow-ups name phase 0's)."""
    for phase in phases:
        svc = phase.services.get(event.service)
        if svc is None:
            continue
        running = phase.status == "running" and svc.state == "pending"
        if not running and event.service not in phase.followups:
            continue
        if any(_base(s.action) in phase.actions for s in event.steps if _news(s)):
            return phase
    return None


def on_report(phase: PhaseState, event: RevocationCompleted, now: datetime) -> None:
    # Only the phase's own actions: a worker also reports the others as not selected.
    steps = [s for s in event.steps if _base(s.action) in phase.actions]
    if phase.status != "running":
        phase_followup.on_report(phase, event.service, steps, now)
        return
    svc = phase.services[event.service]
    svc.state = "reported"
    svc.steps = steps
    svc.reported_at = now
    _end_if_done(phase, now)


def _end_if_done(phase: PhaseState, now: datetime) -> None:
    if any(s.state == "pending" for s in phase.services.values()):
        return
    steps = [s for svc in phase.services.values() for s in svc.steps]
    proven = [s for s in steps if s.done]
    phase.status = (
        "completed" if steps and len(proven) == len(steps) else "partial" if proven else "failed"
    )
    phase.finished_at = now


def time_out(phase: PhaseState, now: datetime) -> None:
    """A running phase's deadline passed: its silent services' steps are `timed_out`."""
    for name, svc in phase.services.items():
        if svc.state != "pending":
            continue
        svc.state = "timed_out"
        svc.reported_at = now
        svc.steps = [
            StepResult(
                action=action,
                outcome=Outcome.TIMED_OUT,
                attempts=0,
                started_at=phase.started_at or now,
                finished_at=now,
                error=StepError(
                    code="timed_out", message="no report before the deadline", retryable=True
                ),
            )
            for action in services_.expected_actions(Kind.OFFBOARD, name, phase.actions)
        ]
    _end_if_done(phase, now)


def overdue(phases: list[PhaseState], now: datetime) -> list[PhaseState]:
    return [p for p in phases if p.status == "running" and p.deadline and p.deadline <= now]


def cancel(phases: list[PhaseState], now: datetime) -> list[int]:
    """Cancel every phase not started yet, and the follow-ups of those that ended; the
    indexes cancelled (or whose follow-ups were)."""
    cancelled = []
    for phase in phases:
        if phase.followups or phase_followup.next_at(phase) is not None:
            phase.followups = {}
            phase.followup_until = phase.followup_until or now
            cancelled.append(phase.index)
        if phase.status == "scheduled":
            phase.status = "cancelled"
            phase.finished_at = now
            cancelled.append(phase.index)
    return cancelled


def keep_s(phases: list[PhaseState]) -> int:
    """A finished request with phases to come is kept until the last of them (then for
    the retention): the seconds until then."""
    dates = [p.at for p in phases if p.at and p.status in ("scheduled", "running")]
    dates += [p.followup_until for p in phases if p.followups and p.followup_until]
    if not dates:
        return 0
    return max(0, int((max(dates) - datetime.now(UTC)).total_seconds()) + 1)
