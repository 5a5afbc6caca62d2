"""Accepting a request: the first state of a logout, an offboarding (with its profile's
phases), a reversal, or an administrator's order on workstation sessions.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import JsonValue

from sortie_core import services as services_
from sortie_core.events import Kind, SsoSession, Subject, Target
from sortie_orchestrator.profiles import Profile
from sortie_orchestrator.saga import phases
from sortie_orchestrator.saga.state import AdminOrder, SagaState, note


def _accepted(
    request_id: uuid.UUID,
    kind: Kind,
    subject: Subject,
    reason: str,
    now: datetime,
    detail: str | None = None,
    **fields: Any,
) -> SagaState:
    """A request as accepted: `in_progress` unless `fields` say otherwise."""
    fields.setdefault("status", "in_progress")
    state = SagaState(
        request_id=request_id, kind=kind, subject=subject, reason=reason, created_at=now, **fields
    )
    note(state, now, "accepted", detail)
    return state


def new_logout(
    request_id: uuid.UUID,
    subject: Subject,
    reason: str,
    targets: list[Target],
    sso_session: SsoSession | None,
    now: datetime,
) -> SagaState:
    return _accepted(
        request_id, Kind.LOGOUT, subject, reason, now, targets=targets, sso_session=sso_session
    )


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
    chosen: dict[str, Any] = {"actions": actions}
    if profile is not None:
        name, plan = profile
        chosen = {
            "profile": name,
            "actions": list(plan.phases[0].actions),
            "options": plan.options(0),
            "phases": phases.plan(plan),
        }
    when = effective_at.isoformat() if scheduled and effective_at is not None else None
    said = [f"scheduled for {when}"] if when else []
    said += [f"profile {chosen['profile']}"] if chosen.get("profile") else []
    return _accepted(
        request_id,
        Kind.OFFBOARD,
        subject,
        reason,
        now,
        ", ".join(said) or None,
        status="scheduled" if scheduled else "in_progress",
        requested_by=requested_by,
        targets=[Target.M365, Target.ENT, Target.WORKSTATIONS],
        effective_at=effective_at if scheduled else None,
        **chosen,
    )


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
    return _accepted(
        request_id,
        Kind.REVERSAL,
        subject,
        reason,
        now,
        f"reverses {original.request_id}" if original else None,
        requested_by=requested_by,
        targets=[Target.M365],
        actions=services_.m365_reversal_actions(restore, tap_public_key is not None),
        reverses=original.request_id if original else None,
        restore=restore,
        issue_tap=tap_public_key is not None,
        tap_public_key=tap_public_key,
    )


def new_admin(
    request_id: uuid.UUID,
    subject: Subject,
    reason: str,
    requested_by: str,
    order: AdminOrder,
    now: datetime,
) -> SagaState:
    return _accepted(
        request_id,
        Kind.WORKSTATION_ADMIN,
        subject,
        reason,
        now,
        requested_by=requested_by,
        targets=[Target.WORKSTATIONS],
        actions=[order.action],
        admin=order,
    )
