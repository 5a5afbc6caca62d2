"""What the API answers about requests: a 202's body, and a request as the API shows it
(its services, steps and their proofs, timeline, phases; never its SSO credentials)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from sortie_core.events import Coverage, Discovery, Evidence, StepItem, StepResult, Subject
from sortie_core.statuses import RequestStatus
from sortie_orchestrator import saga
from sortie_orchestrator.http.phase_views import PhaseView, TapView, phases_of, tap_of
from sortie_orchestrator.saga import SagaState, ServiceState
from sortie_orchestrator.saga.followup import FollowUp


class Links(BaseModel):
    self: str


class Accepted(BaseModel):
    request_id: uuid.UUID
    status: str
    links: Links
    profile: str | None = Field(default=None, description="An offboarding: its profile")
    progress_url: str | None = Field(
        default=None,
        description="A logout only: the page to send the user's browser to. It shows, in "
        "their language, each service as it is signed out, the SSO session last; needs no "
        "login; unguessable; expires after `progress_ttl_s` (default 15 minutes).",
    )


def _as_is(source: object, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields a view shows as they are stored."""
    return {name: getattr(source, name) for name in names}


_STEP_AS_IS = ("action", "attempts", "started_at", "finished_at", "detail", "done", "evidence")
_SERVICE_AS_IS = ("state", "reported_at", "late", "discovery", "presence_age_s")
_REQUEST_AS_IS = (
    "request_id",
    "status",
    "subject",
    "reason",
    "requested_by",
    "created_at",
    "effective_at",
    "started_at",
    "phase1_deadline",
    "sso_requested_at",
    "finished_at",
    "followups",
    "followup_until",
    "healed_at",
    "profile",
    "reverses",
    "reversed_by",
)


class StepView(BaseModel):
    action: str
    outcome: str
    attempts: int
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    error: dict[str, Any] | None = None
    detail: str | None = None
    # `verified`, `acknowledged`, or why this step does not prove the access is gone.
    proof: str
    done: bool
    verification: str | None = None
    evidence: Evidence | None = None
    skip_reason: str | None = None
    items: list[StepItem] = []

    @classmethod
    def of(cls, step: StepResult) -> StepView:
        return cls(
            **_as_is(step, _STEP_AS_IS),
            outcome=step.outcome.value,
            duration_seconds=round(step.duration_seconds, 6),
            error=step.error.model_dump() if step.error else None,
            proof=saga.proof_of(step),
            verification=step.verification.value if step.verification else None,
            skip_reason=step.skip_reason.value if step.skip_reason else None,
            items=list(step.items),
        )


class ServiceView(BaseModel):
    state: str
    reported_at: datetime | None
    late: bool = False
    steps: list[StepView]
    discovery: Discovery | None = None
    presence_age_s: float | None = None
    # M365 only, while its steps are pending: how long a Graph write queued now waits for
    # the tenant's write quota, as the M365 worker last said (None: no queue to speak of).
    expected_wait_s: float | None = None

    @classmethod
    def of(cls, svc: ServiceState) -> ServiceView:
        return cls(**_as_is(svc, _SERVICE_AS_IS), steps=[StepView.of(s) for s in svc.steps])


class TimelineView(BaseModel):
    at: datetime
    event: str
    detail: str | None = None


class RequestView(BaseModel):
    request_id: uuid.UUID
    kind: str
    status: str
    subject: Subject
    reason: str
    requested_by: str | None
    created_at: datetime
    effective_at: datetime | None
    started_at: datetime | None
    phase1_deadline: datetime | None
    sso_requested_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    services: dict[str, ServiceView]
    sso: ServiceView | None
    coverage: Coverage
    # Revocations still being delivered after the deadline, per service, and until when.
    followups: dict[str, FollowUp]
    followup_until: datetime | None
    healed_at: datetime | None
    timeline: list[TimelineView]
    links: Links
    # The offboarding profile that ran, and its phases (phase 0: this request's status).
    profile: str | None = None
    phases: list[PhaseView] = []
    # A reversal and the offboarding it reverses, both ways.
    reverses: uuid.UUID | None = None
    reversed_by: uuid.UUID | None = None
    temporary_access_pass: TapView | None = None

    @classmethod
    def of(cls, state: SagaState) -> RequestView:
        # Never echo the SSO session (its TGT is a credential).
        return cls(
            **_as_is(state, _REQUEST_AS_IS),
            kind=state.kind.value,
            duration_seconds=state.duration_seconds(),
            services={k: ServiceView.of(v) for k, v in sorted(state.services.items())},
            sso=ServiceView.of(state.sso) if state.sso else None,
            coverage=saga.coverage(state),
            timeline=[TimelineView(**t.model_dump()) for t in state.timeline],
            links=Links(self=f"/v1/requests/{state.request_id}"),
            phases=phases_of(state, StepView),
            temporary_access_pass=tap_of(state),
        )


class RequestPage(BaseModel):
    items: list[RequestView]
    next_cursor: str | None


StatusFilter = RequestStatus
