"""The saga's transitions, as pure functions: state in, (new state, messages) out.

Phase 1 runs every targeted service in parallel. When each of them has reported, or the
phase-1 deadline passed (missing steps become `timed_out`), phase 2 asks for the SSO
logout. It is never skipped. The request then ends `completed`, `partial` (SSO session
gone, something else failed) or `failed` (the SSO logout itself failed), and
`request.finished` is published.

Nothing here does I/O: adapters/saga_store.py persists a transition and publishes its
messages in one atomic step, which is what lets several replicas share the work.
"""

from __future__ import annotations

from datetime import datetime

from sortie_core import services as services_
from sortie_core import streams
from sortie_core.events import (
    Kind,
    Outcome,
    RevocationCompleted,
    SsoLogoutCompleted,
    Target,
)
from sortie_orchestrator.saga import followup, phase_followup, phases
from sortie_orchestrator.saga.commands import (
    command_for,
    followup_messages,
    for_host,
    sso_command,
)
from sortie_orchestrator.saga.followup import SSO
from sortie_orchestrator.saga.state import (
    DEFAULT_TIMEOUTS,
    HostPresence,
    Outgoing,
    SagaState,
    ServiceState,
    Timeouts,
    Transition,
    note,
    synthetic_steps,
)
from sortie_orchestrator.saga.verdict import NO_SSO, final_status, finished_event


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
    command, stream = command_for(state, now, state.phase1_deadline)
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
                messages.append(Outgoing(host_stream, for_host(command)))
            if presence.live:
                services[name] = ServiceState(presence_age_s=presence.age_s)
            else:
                services[name] = ServiceState(
                    state="unreachable",
                    reported_at=now,
                    presence_age_s=presence.age_s,
                    steps=synthetic_steps(
                        state, name, Outcome.UNREACHABLE, now, now, "agent heartbeat lapsed"
                    ),
                )
    state.services = services
    note(state, now, "phase1_started", ", ".join(sorted(services)) or "no service to wait for")
    transition = Transition(state, messages)
    if all(s.state != "pending" for s in services.values()):
        _end_phase1(transition, now, timeouts)
    return transition


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
    late = svc.state != "pending"
    _take_report(state, event.service, svc, event, now, late)
    if late:
        return _reevaluate(Transition(state), now, timeouts)
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
        since = state.started_at or now
        for name, svc in state.services.items():
            if svc.state == "pending":
                _give_up(state, name, svc, since, now, "no report before the deadline")
        note(state, now, "phase1_deadline")
        transition = Transition(state)
        _end_phase1(transition, now, timeouts)
        return transition
    if state.status == "sso_logout":
        assert state.sso is not None
        since = state.sso_requested_at or now
        _give_up(state, SSO, state.sso, since, now, "no SSO logout report before the deadline")
        note(state, now, "sso_deadline")
        transition = Transition(state)
        _finish(transition, now, timeouts)
        return transition
    return None


def _take_report(
    state: SagaState,
    name: str,
    svc: ServiceState,
    event: RevocationCompleted | SsoLogoutCompleted,
    now: datetime,
    late: bool,
) -> None:
    """A service's report. `late`: after the deadline (a late report) or a follow-up's
    answer, what it proves counts, and may heal a finished request."""
    if not late:
        svc.state = "reported"
        svc.steps = list(event.steps)
        svc.discovery = event.discovery
        svc.reported_at = now
        note(state, now, "service_reported", name)
        return
    followup.merge(svc, event.steps)
    svc.discovery = event.discovery or svc.discovery
    svc.late = svc.late or svc.state != "reported"
    note(state, now, "late_report" if svc.late else "followup_report", name)


def _give_up(
    state: SagaState, name: str, svc: ServiceState, since: datetime, now: datetime, why: str
) -> None:
    """A service that did not report before its deadline: its steps time out."""
    svc.state = "timed_out"
    svc.reported_at = now
    svc.steps = synthetic_steps(state, name, Outcome.TIMED_OUT, since, now, why)


def _phase_report(
    state: SagaState, index: int, event: RevocationCompleted, now: datetime
) -> Transition:
    state = state.model_copy(deep=True)
    phase = next(p for p in state.phases if p.index == index)
    phases.on_report(phase, event, now)
    note(state, now, "service_reported", f"{event.service} (phase {index})")
    if phase.finished_at is not None:
        note(state, now, "phase_finished", f"phase {index} {phase.status}")
    return Transition(state)


def _later(transition: Transition, now: datetime, timeouts: Timeouts) -> Transition | None:
    """After phase 0: later phases at their dates (or timed out), and follow-ups."""
    state = transition.state
    changed = False
    for phase in phases.overdue(state.phases, now):
        phases.time_out(phase, now)
        note(state, now, "phase_finished", f"phase {phase.index} {phase.status}")
        changed = True
    command_for = (state.request_id, state.subject, state.reason, state.requested_by or "unknown")
    for stream, command, detail in phases.start_due(
        state.phases, now, timeouts.phase1, (*command_for, state.profile)
    ):
        transition.messages.append(Outgoing(stream, command))
        note(state, now, "phase_started", detail)
        changed = True
    sent, given_up, touched = phase_followup.run(
        state.phases, now, timeouts, (*command_for, state.profile)
    )
    for stream, command, detail in sent:
        transition.messages.append(Outgoing(stream, command))
        note(state, now, "followup_sent", detail)
    for detail in given_up:
        note(state, now, "followup_given_up", detail)
    changed = changed or touched
    if state.status in ("partial", "failed") and follow_up(transition, now, timeouts):
        changed = True
    return transition if changed else None


def _end_phase1(transition: Transition, now: datetime, timeouts: Timeouts) -> None:
    """The SSO logout, except after an administrator's order or a reversal: those end here."""
    if transition.state.kind in NO_SSO:
        _finish(transition, now, timeouts)
    else:
        _enter_phase2(transition, now, timeouts)


def _enter_phase2(transition: Transition, now: datetime, timeouts: Timeouts) -> None:
    state = transition.state
    state.status = "sso_logout"
    state.sso = ServiceState()
    state.sso_requested_at = now
    state.sso_deadline = now + timeouts.sso
    command = sso_command(state, now, timeouts)
    transition.messages.append(Outgoing(streams.SSO_LOGOUT_REQUESTED, command))
    note(state, now, "sso_logout_requested")


def _apply_app_steps(state: SagaState, event: SsoLogoutCompleted, now: datetime) -> None:
    """The applications the SSO logout ended first count as the ENT service's steps."""
    ent = state.services.get(Target.ENT.value)
    if ent is None or not event.app_steps:
        return
    followup.merge(ent, event.app_steps)
    ent.discovery = event.app_discovery or ent.discovery
    note(state, now, "app_logout_before_sso", ", ".join(s.action for s in event.app_steps))


# -- phase 2 ------------------------------------------------------------------------------
def on_sso_completed(
    state: SagaState,
    event: SsoLogoutCompleted,
    now: datetime,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
) -> Transition | None:
    if state.sso is None or (state.sso.state == "reported" and SSO not in state.followups):
        return None
    state = state.model_copy(deep=True)
    assert state.sso is not None
    _apply_app_steps(state, event, now)
    late = state.status != "sso_logout"
    _take_report(state, SSO, state.sso, event, now, late)
    if late:
        # A report, even late: what it proves counts (final_status reads `reported`).
        state.sso.state = "reported"
        return _reevaluate(Transition(state), now, timeouts)
    transition = Transition(state)
    _finish(transition, now, timeouts)
    return transition


def _finish(transition: Transition, now: datetime, timeouts: Timeouts) -> None:
    state = transition.state
    state.status = final_status(state)
    state.finished_at = now
    if state.status != "completed" and state.kind not in NO_SSO:
        followup.schedule(state, now, timeouts)
    _forget_credentials(state)
    note(state, now, "finished", state.status)
    transition.messages.append(Outgoing(streams.REQUEST_FINISHED, finished_event(state, now)))


def _forget_credentials(state: SagaState) -> None:
    """The TGT and tickets are kept only while the SSO logout or an application's single
    logout may still be sent again: never for the retention period."""
    if not {SSO, Target.ENT.value} & set(state.followups):
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
        note(state, now, "healed" if status == "completed" else "improved", status)
        transition.refinished = True
        transition.messages.append(Outgoing(streams.REQUEST_FINISHED, finished_event(state, now)))
    _forget_credentials(state)
    return transition


def follow_up(transition: Transition, now: datetime, timeouts: Timeouts) -> Transition | None:
    """Send again what is due: each service's command, for its unfinished actions only."""
    state = transition.state
    names = followup.due(state, now)
    if not names:
        return None
    for name in names:
        taken, live = followup.advance(state, name, now, timeouts)
        if not live or taken is None:
            note(state, now, "followup_given_up", name)
            continue
        transition.messages.extend(followup_messages(state, name, taken, now, timeouts))
        note(state, now, "followup_sent", f"{name} attempt {taken.attempt}")
    _forget_credentials(state)
    return transition


def cancel(state: SagaState, now: datetime) -> Transition | None:
    """A scheduled request, or the later phases of a finished one not started yet."""
    if state.finished and state.status != "cancelled":
        state = state.model_copy(deep=True)
        cancelled = phases.cancel(state.phases, now)
        if not cancelled:
            return None
        note(state, now, "phases_cancelled", ", ".join(f"phase {i}" for i in cancelled))
        return Transition(state)
    if state.status != "scheduled":
        return None
    state = state.model_copy(deep=True)
    phases.cancel(state.phases, now)
    state.status = "cancelled"
    state.finished_at = now
    note(state, now, "cancelled")
    transition = Transition(state)
    transition.messages.append(Outgoing(streams.REQUEST_FINISHED, finished_event(state, now)))
    return transition
