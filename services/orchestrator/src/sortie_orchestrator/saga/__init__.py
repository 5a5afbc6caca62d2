"""The saga of one request, as pure functions: state in, (new state, messages) out.

Phase 1 runs every targeted service in parallel. When each of them has reported, or the
phase-1 deadline passed (missing steps become `timed_out`), phase 2 asks for the SSO
logout. It is never skipped. The request then ends `completed`, `partial` (SSO session
gone, something else failed) or `failed` (the SSO logout itself failed), and
`request.finished` is published.

Nothing here does I/O: `adapters/saga_store.py` persists a transition and publishes its messages in
one atomic step, which is what lets several replicas share the work.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from sortie_core import services as services_
from sortie_core import streams
from sortie_core.events import (
    Coverage,
    Discovery,
    Envelope,
    FollowUpScope,
    Kind,
    LogoutRequested,
    OffboardRequested,
    Outcome,
    RequestFinished,
    ReversalRequested,
    RevocationCompleted,
    ServiceSummary,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    SsoSession,
    StepError,
    StepResult,
    Subject,
    Target,
    Verification,
    WorkstationCommandRequested,
)
from sortie_core.services import expected_actions
from sortie_core.steps import ended
from sortie_orchestrator.profiles import Profile
from sortie_orchestrator.saga import followup, phases
from sortie_orchestrator.saga.followup import FollowUp
from sortie_orchestrator.saga.phases import PhaseState

Status = Literal[
    "scheduled", "in_progress", "sso_logout", "completed", "partial", "failed", "cancelled"
]
FINAL_STATUSES = frozenset({"completed", "partial", "failed", "cancelled"})
ServiceStateName = Literal["pending", "reported", "timed_out", "unreachable"]


class ServiceState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: ServiceStateName = "pending"
    steps: list[StepResult] = []
    reported_at: datetime | None = None
    # A report that arrived after the service was given up (kept for the record).
    late: bool = False
    # What the service learnt of where the user had access (from its report).
    discovery: Discovery | None = None
    # For a host: the age of its presence record when the request started.
    presence_age_s: float | None = None


class TimelineEntry(BaseModel):
    at: datetime
    event: str
    detail: str | None = None


class AdminOrder(BaseModel):
    """What the administrator asked: `logoff` or `disconnect` of one session (by id),
    of the subject's sessions, or of every session on the hosts."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["logoff", "disconnect"]
    session_id: str | None = None
    all_sessions: bool = False
    group: str | None = None


class SagaState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    def __deepcopy__(self, memo: dict[int, object] | None = None) -> SagaState:
        # `model_copy(deep=True)` (every transition) through pydantic-core's JSON, ~4x
        # cheaper than copy.deepcopy over the nested models; the state round-trips, as
        # stored (doc_codec).
        return SagaState.model_validate_json(self.model_dump_json())

    request_id: uuid.UUID
    kind: Kind
    status: Status
    subject: Subject
    reason: str
    requested_by: str | None = None
    targets: list[Target] = []
    actions: list[str] = []
    # The SSO session's TGT is needed for phase 2 and dropped when the request ends.
    sso_session: SsoSession | None = Field(default=None, repr=False)
    created_at: datetime
    effective_at: datetime | None = None
    started_at: datetime | None = None
    phase1_deadline: datetime | None = None
    sso_requested_at: datetime | None = None
    sso_deadline: datetime | None = None
    finished_at: datetime | None = None
    services: dict[str, ServiceState] = {}
    sso: ServiceState | None = None
    timeline: list[TimelineEntry] = []
    # An administrator's order on workstation sessions (kind `workstation_admin`).
    admin: AdminOrder | None = None
    # Follow-up delivery after the deadline (followup.py), per service, until the horizon.
    followups: dict[str, FollowUp] = {}
    followup_until: datetime | None = None
    # When a request that had ended `partial`/`failed` became `completed`.
    healed_at: datetime | None = None
    # The offboarding profile (profiles.py): phase 0's options, and its later phases.
    profile: str | None = None
    options: dict[str, dict[str, JsonValue]] = {}
    phases: list[PhaseState] = []
    # Reversal (reversal.py): the offboarding it reverses / the reversal of this one.
    reverses: uuid.UUID | None = None
    reversed_by: uuid.UUID | None = None
    restore: dict[str, dict[str, JsonValue]] = {}
    issue_tap: bool = False
    # The X25519 public key the pass is sealed to (public: the private one is the caller's).
    tap_public_key: str | None = None
    tap_issued_at: datetime | None = None
    tap_revealed_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES

    def next_deadline(self) -> datetime | None:
        if self.status == "scheduled":
            return self.effective_at
        if self.status == "in_progress":
            return self.phase1_deadline
        if self.status == "sso_logout":
            return self.sso_deadline
        if self.status in ("partial", "failed", "completed"):
            due = [d for d in (followup.next_at(self), phases.next_at(self.phases)) if d]
            return min(due, default=None)
        return None

    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - (self.started_at or self.created_at)).total_seconds()


@dataclass(frozen=True, slots=True)
class Outgoing:
    stream: str
    event: Envelope


@dataclass
class Transition:
    state: SagaState
    messages: list[Outgoing] = field(default_factory=list)
    # A finished request finished again with another status (healed by a follow-up).
    refinished: bool = False

    @property
    def finished_now(self) -> bool:
        return any(isinstance(m.event, RequestFinished) for m in self.messages)


@dataclass(frozen=True, slots=True)
class Timeouts:
    phase1: timedelta
    sso: timedelta
    # Follow-up delivery: first retry after ~base, doubling up to max, until the horizon.
    followup_base: timedelta = timedelta(seconds=5)
    followup_max: timedelta = timedelta(minutes=10)
    followup_horizon: timedelta = timedelta(hours=24)
    # How long after the SSO logout was first asked it still waits for the CAS to list the
    # session's tickets when applications must be logged out first (app_logout_first).
    sso_apps_first: timedelta = timedelta(minutes=10)


DEFAULT_TIMEOUTS = Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60))


@dataclass(frozen=True, slots=True)
class HostPresence:
    """What the presence index says of one host holding a session of the subject."""

    host: str
    live: bool
    # Seconds since the agent last wrote its presence record (None: no record any more).
    age_s: float | None = None


def _note(state: SagaState, at: datetime, event: str, detail: str | None = None) -> None:
    state.timeline.append(TimelineEntry(at=at, event=event, detail=detail))


def _synthetic_steps(
    state: SagaState, service: str, outcome: Outcome, since: datetime, now: datetime, why: str
) -> list[StepResult]:
    error = StepError(code=outcome.value, message=why, retryable=True)
    return [
        ended(action, outcome, started_at=since, finished_at=now, error=error)
        for action in expected_actions(state.kind, service, state.actions)
    ]


# -- accepting ----------------------------------------------------------------------------
def new_logout(
    request_id: uuid.UUID,
    subject: Subject,
    reason: str,
    targets: list[Target],
    sso_session: SsoSession | None,
    now: datetime,
) -> SagaState:
    state = SagaState(
        request_id=request_id,
        kind=Kind.LOGOUT,
        status="in_progress",
        subject=subject,
        reason=reason,
        targets=targets,
        sso_session=sso_session,
        created_at=now,
    )
    _note(state, now, "accepted")
    return state


def new_offboard(
    request_id: uuid.UUID,
    subject: Subject,
    reason: str,
    requested_by: str,
    actions: list[str],
    effective_at: datetime | None,
    now: datetime,
    profile: tuple[str, Profile] | None = None,
) -> SagaState:
    """With a `profile`, its phase 0 gives the actions and options (not `actions`)."""
    scheduled = effective_at is not None and effective_at > now
    state = SagaState(
        request_id=request_id,
        kind=Kind.OFFBOARD,
        status="scheduled" if scheduled else "in_progress",
        subject=subject,
        reason=reason,
        requested_by=requested_by,
        targets=[Target.M365, Target.ENT, Target.WORKSTATIONS],
        actions=actions,
        created_at=now,
        effective_at=effective_at if scheduled else None,
    )
    if profile is not None:
        state.profile, chosen = profile
        state.actions = list(chosen.phases[0].actions)
        state.options = chosen.options(0)
        state.phases = phases.plan(chosen)
    when = effective_at.isoformat() if scheduled and effective_at is not None else None
    said = [f"scheduled for {when}"] if when else []
    said += [f"profile {state.profile}"] if state.profile else []
    _note(state, now, "accepted", ", ".join(said) or None)
    return state


def new_reversal(
    request_id: uuid.UUID,
    original: SagaState | None,
    subject: Subject,
    restore: dict[str, dict[str, JsonValue]],
    requested_by: str,
    reason: str,
    tap_public_key: str | None,
    now: datetime,
) -> SagaState:
    """A reversal of `original` (None: a reactivation with nothing on record), restoring
    `restore`; a Temporary Access Pass when there is a key to seal it to."""
    state = SagaState(
        request_id=request_id,
        kind=Kind.REVERSAL,
        status="in_progress",
        subject=subject,
        reason=reason,
        requested_by=requested_by,
        targets=[Target.M365],
        actions=services_.m365_reversal_actions(restore, tap_public_key is not None),
        created_at=now,
        reverses=original.request_id if original else None,
        restore=restore,
        issue_tap=tap_public_key is not None,
        tap_public_key=tap_public_key,
    )
    _note(state, now, "accepted", f"reverses {original.request_id}" if original else None)
    return state


def new_admin(
    request_id: uuid.UUID,
    subject: Subject,
    reason: str,
    requested_by: str,
    order: AdminOrder,
    now: datetime,
) -> SagaState:
    state = SagaState(
        request_id=request_id,
        kind=Kind.WORKSTATION_ADMIN,
        status="in_progress",
        subject=subject,
        reason=reason,
        requested_by=requested_by,
        targets=[Target.WORKSTATIONS],
        actions=[order.action],
        created_at=now,
        admin=order,
    )
    _note(state, now, "accepted")
    return state


def _admin_command(state: SagaState, now: datetime) -> WorkstationCommandRequested:
    assert state.admin is not None and state.phase1_deadline is not None
    return WorkstationCommandRequested(
        request_id=state.request_id,
        subject=state.subject,
        action=state.admin.action,
        session_id=state.admin.session_id,
        all_sessions=state.admin.all_sessions,
        reason=state.reason,
        requested_by=state.requested_by or "unknown",
        deadline=state.phase1_deadline,
        occurred_at=now,
    )


def start(
    state: SagaState, hosts: list[HostPresence], now: datetime, timeouts: Timeouts
) -> Transition:
    """Phase 1: the commands to every targeted service, or phase 2 at once if none."""
    state = state.model_copy(deep=True)
    state.status = "in_progress"
    state.started_at = now
    state.phase1_deadline = now + timeouts.phase1
    phases.date(state.phases, now)
    messages: list[Outgoing] = []
    services: dict[str, ServiceState] = {}
    command, stream = _command(state, now, state.phase1_deadline)
    for target in (Target.M365, Target.ENT):
        if target in state.targets:
            services[target.value] = ServiceState()
    if services:
        messages.append(Outgoing(stream, command))
    if Target.WORKSTATIONS in state.targets:
        for presence in hosts:
            name = services_.workstation_service(presence.host)
            # A user's logout goes to a lapsed host too: its agent finds it when it comes
            # back, and its late report can still heal the request. An administrator's
            # order is for now only.
            if presence.live or state.kind != Kind.WORKSTATION_ADMIN:
                host_stream = streams.workstation_stream(presence.host)
                messages.append(Outgoing(host_stream, _for_host(command)))
            if presence.live:
                services[name] = ServiceState(presence_age_s=presence.age_s)
            else:
                services[name] = ServiceState(
                    state="unreachable",
                    reported_at=now,
                    presence_age_s=presence.age_s,
                    steps=_synthetic_steps(
                        state, name, Outcome.UNREACHABLE, now, now, "agent heartbeat lapsed"
                    ),
                )
    state.services = services
    _note(state, now, "phase1_started", ", ".join(sorted(services)) or "no service to wait for")
    transition = Transition(state, messages)
    if all(s.state != "pending" for s in services.values()):
        _end_phase1(transition, now, timeouts)
    return transition


Command = LogoutRequested | OffboardRequested | ReversalRequested | WorkstationCommandRequested
# The `reverses` of a reactivation with no offboarding on record (the command needs one).
NOTHING_ON_RECORD = uuid.UUID(int=0)


def _command(state: SagaState, now: datetime, deadline: datetime) -> tuple[Command, str]:
    """The phase-1 command of the request and its stream (hosts get copies)."""
    if state.kind == Kind.WORKSTATION_ADMIN:
        # An admin order targets hosts only: the stream is unused.
        return _admin_command(state, now), streams.LOGOUT_REQUESTED
    if state.kind == Kind.LOGOUT:
        logout = LogoutRequested(
            request_id=state.request_id,
            subject=state.subject,
            reason=state.reason,
            targets=tuple(state.targets),
            # The credentials stay in the request's own key (sortie_core.credentials).
            sso_session_stored=state.sso_session is not None,
            deadline=deadline,
            occurred_at=now,
        )
        return logout, streams.LOGOUT_REQUESTED
    if state.kind == Kind.REVERSAL:
        reversal = ReversalRequested(
            request_id=state.request_id,
            subject=state.subject,
            reverses=state.reverses or NOTHING_ON_RECORD,
            reason=state.reason,
            requested_by=state.requested_by or "unknown",
            restore=state.restore,
            issue_temporary_access_pass=state.issue_tap,
            tap_public_key=state.tap_public_key,
            deadline=deadline,
            occurred_at=now,
        )
        return reversal, streams.REVERSAL_REQUESTED
    offboard = OffboardRequested(
        request_id=state.request_id,
        subject=state.subject,
        reason=state.reason,
        requested_by=state.requested_by or "unknown",
        actions=tuple(state.actions),
        deadline=deadline,
        occurred_at=now,
        profile=state.profile,
        options=state.options,
    )
    return offboard, streams.OFFBOARD_REQUESTED


def _for_host(command: Command) -> Command:
    """A host's copy: its own event id, and no pointer to the SSO credentials (an agent
    needs none, and could not read them)."""
    update: dict[str, object] = {"event_id": uuid.uuid4()}
    if isinstance(command, LogoutRequested):
        update["sso_session_stored"] = False
    return command.model_copy(update=update)


# -- phase 1 ------------------------------------------------------------------------------
def on_revocation(
    state: SagaState, event: RevocationCompleted, now: datetime, timeouts: Timeouts
) -> Transition | None:
    owner = phases.owner(state.phases, event)
    if owner is not None:
        return _phase_report(state, owner.index, event, now)
    svc = state.services.get(event.service)
    if svc is None:
        return None  # not a service this request waits for
    if svc.state == "reported" and event.service not in state.followups:
        return None  # a duplicate delivery
    state = state.model_copy(deep=True)
    svc = state.services[event.service]
    if svc.state != "pending":
        # After the deadline (a late report) or a follow-up's answer: what it proves
        # counts, and may heal a finished request.
        followup.merge(svc, event.steps)
        svc.discovery = event.discovery or svc.discovery
        svc.late = svc.late or svc.state != "reported"
        _note(state, now, "late_report" if svc.late else "followup_report", event.service)
        return _reevaluate(Transition(state), now, timeouts)
    svc.state = "reported"
    svc.steps = list(event.steps)
    svc.discovery = event.discovery
    svc.reported_at = now
    _note(state, now, "service_reported", event.service)
    if state.issue_tap and any(
        s.action == services_.ISSUE_TEMPORARY_ACCESS_PASS and s.outcome == Outcome.SUCCEEDED
        for s in event.steps
    ):
        state.tap_issued_at = now
    transition = Transition(state)
    if state.status == "in_progress" and all(s.state != "pending" for s in state.services.values()):
        _end_phase1(transition, now, timeouts)
    return transition


def on_deadline(state: SagaState, now: datetime, timeouts: Timeouts) -> Transition | None:
    """Phase-1 deadline or SSO deadline. (A scheduled start is handled by `start`.)"""
    deadline = state.next_deadline()
    if deadline is None or deadline > now:
        return None
    state = state.model_copy(deep=True)
    if state.status in ("partial", "failed", "completed"):
        return _later(Transition(state), now, timeouts)
    if state.status == "in_progress":
        for name, svc in state.services.items():
            if svc.state == "pending":
                svc.state = "timed_out"
                svc.reported_at = now
                svc.steps = _synthetic_steps(
                    state,
                    name,
                    Outcome.TIMED_OUT,
                    state.started_at or now,
                    now,
                    "no report before the deadline",
                )
        _note(state, now, "phase1_deadline")
        transition = Transition(state)
        _end_phase1(transition, now, timeouts)
        return transition
    if state.status == "sso_logout":
        assert state.sso is not None
        state.sso.state = "timed_out"
        state.sso.reported_at = now
        state.sso.steps = _synthetic_steps(
            state,
            "sso",
            Outcome.TIMED_OUT,
            state.sso_requested_at or now,
            now,
            "no SSO logout report before the deadline",
        )
        _note(state, now, "sso_deadline")
        transition = Transition(state)
        _finish(transition, now, timeouts)
        return transition
    return None


_NO_SSO = (Kind.WORKSTATION_ADMIN, Kind.REVERSAL)


def _phase_report(
    state: SagaState, index: int, event: RevocationCompleted, now: datetime
) -> Transition:
    state = state.model_copy(deep=True)
    phase = next(p for p in state.phases if p.index == index)
    phases.on_report(phase, event, now)
    _note(state, now, "service_reported", f"{event.service} (phase {index})")
    if phase.finished_at is not None:
        _note(state, now, "phase_finished", f"phase {index} {phase.status}")
    return Transition(state)


def _later(transition: Transition, now: datetime, timeouts: Timeouts) -> Transition | None:
    """After phase 0: later phases at their dates (or timed out), and follow-ups."""
    state = transition.state
    changed = False
    for phase in phases.overdue(state.phases, now):
        phases.time_out(phase, now)
        _note(state, now, "phase_finished", f"phase {phase.index} {phase.status}")
        changed = True
    command_for = (state.request_id, state.subject, state.reason, state.requested_by or "unknown")
    for stream, command, detail in phases.start_due(
        state.phases, now, timeouts.phase1, (*command_for, state.profile)
    ):
        transition.messages.append(Outgoing(stream, command))
        _note(state, now, "phase_started", detail)
        changed = True
    if state.status in ("partial", "failed") and _follow_up(transition, now, timeouts):
        changed = True
    return transition if changed else None


def _end_phase1(transition: Transition, now: datetime, timeouts: Timeouts) -> None:
    """The SSO logout, except after an administrator's order or a reversal: those end here."""
    if transition.state.kind in _NO_SSO:
        _finish(transition, now, timeouts)
    else:
        _enter_phase2(transition, now, timeouts)


def _enter_phase2(transition: Transition, now: datetime, timeouts: Timeouts) -> None:
    state = transition.state
    state.status = "sso_logout"
    state.sso = ServiceState()
    state.sso_requested_at = now
    state.sso_deadline = now + timeouts.sso
    command = _sso_command(state, now, timeouts)
    transition.messages.append(Outgoing(streams.SSO_LOGOUT_REQUESTED, command))
    _note(state, now, "sso_logout_requested")


def _sso_command(state: SagaState, now: datetime, timeouts: Timeouts) -> SsoLogoutRequested:
    tgt = state.sso_session.tgt if state.sso_session else None
    return SsoLogoutRequested(
        request_id=state.request_id,
        subject=state.subject,
        kind=state.kind,
        tgt_stored=bool(tgt) and state.kind == Kind.LOGOUT,
        all_sessions=state.kind == Kind.OFFBOARD,
        app_logout_first=_apps_without_tickets(state, now, timeouts),
        occurred_at=now,
    )


def _apps_without_tickets(state: SagaState, now: datetime, timeouts: Timeouts) -> tuple[str, ...]:
    """The ENT applications not logged out because the CAS could not tell their tickets:
    the SSO logout must end them first (once the session is gone the CAS forgets them),
    and waits for the CAS to list them, but not past `sso_apps_first`: an alive SSO
    session is the worst outcome (e.g. an actuator that fails while the ticket deletion
    works)."""
    asked = state.sso_requested_at or now
    if now - asked >= timeouts.sso_apps_first:
        return ()
    ent = state.services.get(Target.ENT.value)
    if ent is None or ent.discovery is None or ent.discovery.error is None:
        return ()
    return tuple(
        s.action
        for s in ent.steps
        if not s.done and s.error is not None and s.error.code == services_.CAS_SLO_NO_TICKET
    )


def _apply_app_steps(state: SagaState, event: SsoLogoutCompleted, now: datetime) -> None:
    """The applications the SSO logout ended first count as the ENT service's steps."""
    ent = state.services.get(Target.ENT.value)
    if ent is None or not event.app_steps:
        return
    followup.merge(ent, event.app_steps)
    ent.discovery = event.app_discovery or ent.discovery
    _note(state, now, "app_logout_before_sso", ", ".join(s.action for s in event.app_steps))


# -- phase 2 ------------------------------------------------------------------------------
def on_sso_completed(
    state: SagaState,
    event: SsoLogoutCompleted,
    now: datetime,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> Transition | None:
    if state.sso is None or (state.sso.state == "reported" and followup.SSO not in state.followups):
        return None
    state = state.model_copy(deep=True)
    assert state.sso is not None
    _apply_app_steps(state, event, now)
    if state.status != "sso_logout":
        followup.merge(state.sso, event.steps)
        state.sso.discovery = event.discovery or state.sso.discovery
        state.sso.late = state.sso.late or state.sso.state != "reported"
        # A report, even late: what it proves counts (final_status reads `reported`).
        state.sso.state = "reported"
        _note(state, now, "late_report" if state.sso.late else "followup_report", "sso")
        return _reevaluate(Transition(state), now, timeouts)
    state.sso.state = "reported"
    state.sso.steps = list(event.steps)
    state.sso.discovery = event.discovery
    state.sso.reported_at = now
    _note(state, now, "service_reported", "sso")
    transition = Transition(state)
    _finish(transition, now, timeouts)
    return transition


def final_status(state: SagaState) -> Status:
    """`completed` only when every step is proven (StepResult.done) and the SSO session's
    end was read back from the CAS (`verified`: its answer to a delete proves nothing);
    `failed` when the SSO session may still be alive; `partial` otherwise."""
    if state.kind in _NO_SSO:
        good = [
            svc.state != "pending" and all(s.done for s in svc.steps)
            for svc in state.services.values()
        ]
        return "completed" if all(good) else "partial" if any(good) else "failed"
    sso_ok = (
        state.sso is not None
        and state.sso.state == "reported"
        and bool(state.sso.steps)
        and all(s.done and s.verification == Verification.VERIFIED for s in state.sso.steps)
    )
    if not sso_ok:
        return "failed"
    # A service given up at the deadline counts once a late report proves its steps.
    phase1_ok = all(
        svc.state != "pending" and all(s.done for s in svc.steps) for svc in state.services.values()
    )
    return "completed" if phase1_ok else "partial"


def _finish(transition: Transition, now: datetime, timeouts: Timeouts) -> None:
    state = transition.state
    state.status = final_status(state)
    state.finished_at = now
    if state.status != "completed" and state.kind not in _NO_SSO:
        followup.schedule(state, now, timeouts)
    _forget_credentials(state)
    _note(state, now, "finished", state.status)
    transition.messages.append(Outgoing(streams.REQUEST_FINISHED, finished_event(state, now)))


def _forget_credentials(state: SagaState) -> None:
    """The TGT and tickets are kept only while the SSO logout or an application's single
    logout may still be sent again: never for the retention period."""
    if not {followup.SSO, Target.ENT.value} & set(state.followups):
        state.sso_session = None


def _reevaluate(transition: Transition, now: datetime, timeouts: Timeouts) -> Transition:
    """After a late or follow-up report: a finished request may change status (healed)."""
    state = transition.state
    if not state.finished or state.status == "cancelled":
        return transition
    followup.schedule(state, now, timeouts)
    status = final_status(state)
    if status != state.status and status in ("completed", "partial"):
        state.status = status
        if status == "completed":
            state.healed_at = now
            state.followups = {}
        _note(state, now, "healed" if status == "completed" else "improved", status)
        transition.refinished = True
        transition.messages.append(Outgoing(streams.REQUEST_FINISHED, finished_event(state, now)))
    _forget_credentials(state)
    return transition


def _follow_up(transition: Transition, now: datetime, timeouts: Timeouts) -> Transition | None:
    """Send again what is due: each service's command, for its unfinished actions only."""
    state = transition.state
    names = followup.due(state, now)
    if not names:
        return None
    for name in names:
        taken, live = followup.advance(state, name, now, timeouts)
        if not live or taken is None:
            _note(state, now, "followup_given_up", name)
            continue
        transition.messages.extend(_followup_messages(state, name, taken, now, timeouts))
        _note(state, now, "followup_sent", f"{name} attempt {taken.attempt}")
    _forget_credentials(state)
    return transition


def _followup_messages(
    state: SagaState, name: str, taken: FollowUp, now: datetime, timeouts: Timeouts
) -> list[Outgoing]:
    scope = FollowUpScope(services=(name,), actions=tuple(taken.actions), attempt=taken.attempt)
    if name == followup.SSO:
        return [
            Outgoing(
                streams.SSO_LOGOUT_REQUESTED,
                _sso_command(state, now, timeouts).model_copy(update={"followup": scope}),
            )
        ]
    command, stream = _command(state, now, now + timeouts.phase1)
    command = command.model_copy(update={"followup": scope})
    host = services_.host_of(name)
    if host is not None:
        return [Outgoing(streams.workstation_stream(host), _for_host(command))]
    return [Outgoing(stream, command)]


def proof_of(step: StepResult) -> str:
    """`verified`, `acknowledged`, or in a few words why the step proves nothing."""
    if step.done:
        if step.outcome == Outcome.SKIPPED:
            return f"skipped ({step.skip_reason.value if step.skip_reason else 'policy'})"
        if step.outcome == Outcome.NOT_FOUND:
            return "not_found (verified)"
        return (step.verification or Verification.ACKNOWLEDGED).value
    if step.outcome == Outcome.SKIPPED:
        why = step.skip_reason.value if step.skip_reason else "no policy reason"
        return f"skipped without a policy reason ({why})"
    if step.outcome == Outcome.NOT_FOUND:
        return "not_found without an authoritative lookup"
    if step.outcome == Outcome.SUCCEEDED:
        return (step.verification or Verification.UNVERIFIED).value
    code = step.error.code if step.error else step.outcome.value
    return f"{step.outcome.value} ({code})"


def all_services(state: SagaState) -> dict[str, ServiceState]:
    return {**state.services, **({"sso": state.sso} if state.sso else {})}


def coverage(state: SagaState) -> Coverage:
    """Where the user had access and what was ended, from the services' own reports."""
    m365 = state.services.get("m365")
    m365_found = m365.discovery if m365 else None
    found = [s.discovery for s in all_services(state).values() if s.discovery is not None]

    def largest(attr: str) -> int | None:
        values = [getattr(d, attr) for d in found if getattr(d, attr) is not None]
        return max(values) if values else None

    steps = [step for svc in all_services(state).values() for step in svc.steps]
    proven = [s for s in steps if s.done]
    verified = [s for s in proven if s.verification == Verification.VERIFIED]
    return Coverage(
        m365_identity=m365_found.identity if m365_found else None,
        m365_identity_tried=m365_found.identity_tried if m365_found else (),
        sso_sessions_found=largest("sso_sessions_found"),
        sso_sessions_ended=state.sso.discovery.sso_sessions_ended
        if state.sso and state.sso.discovery
        else None,
        applications=tuple(sorted({a for d in found for a in d.applications})),
        tickets_found=largest("tickets_found"),
        tickets_from_caller=largest("tickets_from_caller"),
        hosts=tuple(sorted(h for n in state.services if (h := services_.host_of(n)))),
        steps_total=len(steps),
        steps_verified=len(verified),
        steps_acknowledged=len(proven) - len(verified),
        steps_not_proven=len(steps) - len(proven),
    )


def finished_event(state: SagaState, now: datetime) -> RequestFinished:
    services = {
        name: ServiceSummary(
            state=svc.state,
            outcomes={s.action: s.outcome for s in svc.steps},
            proofs={s.action: proof_of(s) for s in svc.steps},
        )
        for name, svc in all_services(state).items()
    }
    status = state.status
    assert status in ("completed", "partial", "failed", "cancelled")
    return RequestFinished(
        request_id=state.request_id,
        subject=state.subject,
        kind=state.kind,
        status=status,
        duration_seconds=state.duration_seconds() or 0.0,
        services=services,
        coverage=coverage(state),
        occurred_at=now,
    )


def cancel(state: SagaState, now: datetime) -> Transition | None:
    """A scheduled request, or the later phases of a finished one not started yet."""
    if state.finished and state.status != "cancelled":
        state = state.model_copy(deep=True)
        cancelled = phases.cancel(state.phases, now)
        if not cancelled:
            return None
        _note(state, now, "phases_cancelled", ", ".join(f"phase {i}" for i in cancelled))
        return Transition(state)
    if state.status != "scheduled":
        return None
    state = state.model_copy(deep=True)
    phases.cancel(state.phases, now)
    state.status = "cancelled"
    state.finished_at = now
    _note(state, now, "cancelled")
    transition = Transition(state)
    transition.messages.append(Outgoing(streams.REQUEST_FINISHED, finished_event(state, now)))
    return transition
