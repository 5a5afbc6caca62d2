"""The commands the saga sends: phase 1's to each targeted service (hosts get copies),
phase 2's SSO logout, and a follow-up's, scoped to the actions still open.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sortie_core import services as services_
from sortie_core import streams
from sortie_core.events import (
    FollowUpScope,
    Kind,
    LogoutRequested,
    OffboardRequested,
    ReversalRequested,
    SsoLogoutRequested,
    Target,
    WorkstationCommandRequested,
)
from sortie_orchestrator.saga.followup import SSO
from sortie_orchestrator.saga.state import FollowUp, Outgoing, SagaState, Timeouts

Command = LogoutRequested | OffboardRequested | ReversalRequested | WorkstationCommandRequested
# The `reverses` of a reactivation with no offboarding on record (the command needs one).
NOTHING_ON_RECORD = uuid.UUID(int=0)


def admin_command(state: SagaState, now: datetime) -> WorkstationCommandRequested:
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


def command_for(state: SagaState, now: datetime, deadline: datetime) -> tuple[Command, str]:
    """The phase-1 command of the request and its stream (hosts get copies)."""
    if state.kind == Kind.WORKSTATION_ADMIN:
        # An admin order targets hosts only: the stream is unused.
        return admin_command(state, now), streams.LOGOUT_REQUESTED
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


def for_host(command: Command) -> Command:
    """A host's copy: its own event id, and no pointer to the SSO credentials (an agent
    needs none, and could not read them)."""
    update: dict[str, object] = {"event_id": uuid.uuid4()}
    if isinstance(command, LogoutRequested):
        update["sso_session_stored"] = False
    return command.model_copy(update=update)


def sso_command(state: SagaState, now: datetime, timeouts: Timeouts) -> SsoLogoutRequested:
    tgt = state.sso_session.tgt if state.sso_session else None
    return SsoLogoutRequested(
        request_id=state.request_id,
        subject=state.subject,
        kind=state.kind,
        tgt_stored=bool(tgt) and state.kind == Kind.LOGOUT,
        all_sessions=state.kind == Kind.OFFBOARD,
        app_logout_first=apps_without_tickets(state, now, timeouts),
        occurred_at=now,
    )


def apps_without_tickets(state: SagaState, now: datetime, timeouts: Timeouts) -> tuple[str, ...]:
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


def followup_messages(
    state: SagaState, name: str, taken: FollowUp, now: datetime, timeouts: Timeouts
) -> list[Outgoing]:
    scope = FollowUpScope(services=(name,), actions=tuple(taken.actions), attempt=taken.attempt)
    if name == SSO:
        return [
            Outgoing(
                streams.SSO_LOGOUT_REQUESTED,
                sso_command(state, now, timeouts).model_copy(update={"followup": scope}),
            )
        ]
    command, stream = command_for(state, now, now + timeouts.phase1)
    command = command.model_copy(update={"followup": scope})
    host = services_.host_of(name)
    if host is not None:
        return [Outgoing(streams.workstation_stream(host), for_host(command))]
    return [Outgoing(stream, command)]
