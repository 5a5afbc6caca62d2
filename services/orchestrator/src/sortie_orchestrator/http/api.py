"""HTTP intake and status: `/v1/logouts`, `/v1/offboardings`, `/v1/requests`."""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from sortie_core.events import (
    Coverage,
    Discovery,
    Evidence,
    ServiceTicket,
    SsoSession,
    StepItem,
    StepResult,
    Subject,
    Target,
)
from sortie_core.services import OFFBOARD_ACTIONS
from sortie_orchestrator import handlers, saga
from sortie_orchestrator.http.auth import Principal, authenticate, require
from sortie_orchestrator.http.phase_views import PhaseView, TapView, phases_of, tap_of
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.sites import visible
from sortie_orchestrator.http.ui import logoutpage
from sortie_orchestrator.profiles import Profile, Profiles
from sortie_orchestrator.saga import SagaState, ServiceState
from sortie_orchestrator.saga.followup import FollowUp

router = APIRouter(prefix="/v1")

_NO_CTRL = r"^[^\x00-\x1f\x7f]+$"
# Control, format (bidi overrides, zero-width), separator and private-use characters:
# they would be shown verbatim, or invisibly, on the status page and in reports.
_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs"})


def _visible(value: str) -> str:
    bad = next((c for c in value if unicodedata.category(c) in _INVISIBLE), None)
    if bad is not None:
        raise ValueError(f"contains the control or invisible character U+{ord(bad):04X}")
    return value


Visible = AfterValidator(_visible)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SubjectIn(Strict):
    user_id: Annotated[str, Field(min_length=1, max_length=256, pattern=_NO_CTRL), Visible]
    upn: Annotated[str, Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"), Visible] | None = None
    cas_username: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=r"^\S+$"), Visible] | None
    ) = None
    windows_account: (
        Annotated[str, Field(min_length=1, max_length=256, pattern=_NO_CTRL), Visible] | None
    ) = None
    # The user's site (school: UAI code or name), as SCIM's Sortie extension `site`.
    site: Annotated[str, Field(min_length=1, max_length=100, pattern=_NO_CTRL), Visible] | None = (
        None
    )


class ServiceTicketIn(Strict):
    # Printable ASCII only (a CAS service URL is percent-encoded): no control character
    # (\x01, \x7f) can reach the registry match or a log line.
    service: Annotated[str, Field(max_length=2048, pattern=r"^https?://[\x21-\x7e]+$")]
    ticket: Annotated[str, Field(pattern=r"^ST-[A-Za-z0-9._\-]{1,250}$")]


class SsoSessionIn(Strict):
    tgt: Annotated[str, Field(pattern=r"^TGT-[A-Za-z0-9._\-]{1,250}$")] | None = None
    service_tickets: Annotated[list[ServiceTicketIn], Field(max_length=100)] = []


class LogoutIn(Strict):
    subject: SubjectIn
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_CTRL), Visible] = (
        "user_logout"
    )
    targets: Annotated[list[Target], Field(min_length=1, max_length=3)] = [
        Target.M365,
        Target.ENT,
        Target.WORKSTATIONS,
    ]
    sso_session: SsoSessionIn | None = None

    @field_validator("targets")
    @classmethod
    def _unique(cls, value: list[Target]) -> list[Target]:
        if len(set(value)) != len(value):
            raise ValueError("targets must not repeat")
        return value


class OffboardIn(Strict):
    subject: SubjectIn
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=_NO_CTRL), Visible] = (
        "offboarding"
    )
    effective_at: AwareDatetime | None = None
    actions: Annotated[list[str], Field(max_length=20)] | None = None
    profile: Annotated[
        str | None,
        Field(
            max_length=64,
            description="An offboarding profile (its actions, order, options and later "
            "phases); default: the site's. Not with `actions`.",
        ),
    ] = None

    @field_validator("effective_at", mode="before")
    @classmethod
    def _text_date(cls, value: object) -> object:
        # A bare number would be read as seconds since 1970, i.e. "now": refuse it.
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("effective_at must be an ISO 8601 date-time with a time zone")
        return value

    @field_validator("actions")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - OFFBOARD_ACTIONS)
        if unknown:
            raise ValueError(f"unknown actions {unknown}; known: {sorted(OFFBOARD_ACTIONS)}")
        return value


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
            action=step.action,
            outcome=step.outcome.value,
            attempts=step.attempts,
            started_at=step.started_at,
            finished_at=step.finished_at,
            duration_seconds=round(step.duration_seconds, 6),
            error=step.error.model_dump() if step.error else None,
            detail=step.detail,
            proof=saga.proof_of(step),
            done=step.done,
            verification=step.verification.value if step.verification else None,
            evidence=step.evidence,
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

    @classmethod
    def of(cls, svc: ServiceState) -> ServiceView:
        return cls(
            state=svc.state,
            reported_at=svc.reported_at,
            late=svc.late,
            steps=[StepView.of(s) for s in svc.steps],
            discovery=svc.discovery,
            presence_age_s=svc.presence_age_s,
        )


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
            request_id=state.request_id,
            kind=state.kind.value,
            status=state.status,
            subject=state.subject,
            reason=state.reason,
            requested_by=state.requested_by,
            created_at=state.created_at,
            effective_at=state.effective_at,
            started_at=state.started_at,
            phase1_deadline=state.phase1_deadline,
            sso_requested_at=state.sso_requested_at,
            finished_at=state.finished_at,
            duration_seconds=state.duration_seconds(),
            services={k: ServiceView.of(v) for k, v in sorted(state.services.items())},
            sso=ServiceView.of(state.sso) if state.sso else None,
            coverage=saga.coverage(state),
            followups=state.followups,
            followup_until=state.followup_until,
            healed_at=state.healed_at,
            timeline=[TimelineView(**t.model_dump()) for t in state.timeline],
            links=Links(self=f"/v1/requests/{state.request_id}"),
            profile=state.profile,
            phases=phases_of(state, StepView),
            reverses=state.reverses,
            reversed_by=state.reversed_by,
            temporary_access_pass=tap_of(state),
        )


class RequestPage(BaseModel):
    items: list[RequestView]
    next_cursor: str | None


async def _deps(request: Request) -> handlers.Deps:
    # Async: FastAPI runs a sync dependency in its thread pool, once per request.
    deps: handlers.Deps = request.app.state.deps
    return deps


async def _require_json(request: Request) -> None:
    # Authenticated first: an anonymous caller learns nothing, not even the media type.
    await authenticate(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise Problem(415, "send the body as application/json", slug="unsupported-media-type")


IdemKey = Annotated[
    str | None, Header(alias="Idempotency-Key", max_length=200, pattern=r"^[\x21-\x7e]+$")
]


# Not part of what a request does: a re-run of the same order may word its reason anew or
# re-resolve a relative date ("+1d", as `sortie offboard --csv` does), and stays a replay.
_NOT_FINGERPRINTED = frozenset({"reason", "effective_at"})


def fingerprint(what: str, body: BaseModel) -> str:
    """What an Idempotency-Key is bound to: the kind of order, who and what it is for (the
    validated body but its reason and date); another subject or target is a 422."""
    data = body.model_dump_json(exclude=set(_NOT_FINGERPRINTED))
    return hashlib.sha256(f"{what}\x00{data}".encode()).hexdigest()


def mark_accepted(response: Response, rid: uuid.UUID, created: bool) -> Links:
    """The headers of a 202 (and of its idempotent replay); the links of its body."""
    response.headers["Location"] = f"/v1/requests/{rid}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return Links(self=f"/v1/requests/{rid}")


def _accepted(response: Response, rid: uuid.UUID, created: bool, status: str) -> Accepted:
    return Accepted(request_id=rid, status=status, links=mark_accepted(response, rid, created))


def _subject(body: SubjectIn, principal: Principal | None = None) -> Subject:
    """The subject; a caller limited to sites may only name one of its sites."""
    if principal is not None and not principal.sees_site(body.site):
        raise Problem(403, "this subject's site is not one of this token's", slug="outside-sites")
    return Subject(**body.model_dump())


@router.post(
    "/logouts",
    status_code=202,
    response_model=Accepted,
    dependencies=[Depends(_require_json)],
    summary="Sign a user out everywhere, SSO session last",
)
async def post_logout(
    body: LogoutIn,
    response: Response,
    principal: Annotated[Principal, Depends(require("logout:write"))],
    deps: Annotated[handlers.Deps, Depends(_deps)],
    request: Request,
    idempotency_key: IdemKey = None,
) -> Accepted:
    sso = None
    if body.sso_session is not None:
        sso = SsoSession(
            tgt=body.sso_session.tgt,
            service_tickets=tuple(
                ServiceTicket(service=t.service, ticket=t.ticket)
                for t in body.sso_session.service_tickets
            ),
        )
    token, link = logoutpage.new_link()
    created, rid = await handlers.accept_logout(
        deps,
        subject=_subject(body.subject, principal),
        reason=body.reason,
        targets=list(body.targets),
        sso_session=sso,
        idempotency_key=idempotency_key,
        principal=principal.name,
        fingerprint=fingerprint("logout", body),
        progress=(link, request.app.state.settings.progress_ttl_s),
    )
    accepted = _accepted(response, rid, created, "accepted")
    return accepted.model_copy(update={"progress_url": logoutpage.progress_url(request, token)})


@router.post(
    "/offboardings",
    status_code=202,
    response_model=Accepted,
    dependencies=[Depends(_require_json)],
    summary="Offboard a user now or at `effective_at`",
)
async def post_offboarding(
    body: OffboardIn,
    response: Response,
    principal: Annotated[Principal, Depends(require("offboard:write"))],
    deps: Annotated[handlers.Deps, Depends(_deps)],
    request: Request,
    idempotency_key: IdemKey = None,
) -> Accepted:
    max_days = request.app.state.settings.max_schedule_days
    if body.effective_at is not None and body.effective_at > datetime.now(UTC) + timedelta(
        days=max_days
    ):
        raise Problem(
            422, f"effective_at is more than {max_days} days ahead", slug="invalid-request"
        )
    created, rid = await handlers.accept_offboard(
        deps,
        subject=_subject(body.subject, principal),
        reason=body.reason,
        requested_by=principal.name,
        actions=list(body.actions or []),
        effective_at=body.effective_at,
        idempotency_key=idempotency_key,
        principal=principal.name,
        fingerprint=fingerprint("offboard", body),
        profile=_profile(request, body),
    )
    loaded = await deps.store.load(rid)
    status = loaded.state.status if loaded else "accepted"
    accepted = _accepted(
        response, rid, created, "scheduled" if status == "scheduled" else "accepted"
    )
    return accepted.model_copy(update={"profile": loaded.state.profile if loaded else None})


def _profile(request: Request, body: OffboardIn) -> tuple[str, Profile] | None:
    """The profile named, or the site's default; none when the caller named `actions`."""
    if body.actions is not None:
        if body.profile is not None:
            raise Problem(422, "give either `profile` or `actions`", slug="invalid-request")
        return None
    profiles: Profiles = request.app.state.settings.profiles
    try:
        return profiles.get(body.profile)
    except KeyError as exc:
        raise Problem(422, str(exc.args[0]), slug="unknown-profile") from exc


@router.get("/requests/{request_id}", response_model=RequestView)
async def get_request(
    request_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require("requests:read"))],
    deps: Annotated[handlers.Deps, Depends(_deps)],
) -> RequestView:
    return RequestView.of(await visible(deps, request_id, principal))


StatusFilter = Literal[
    "scheduled", "in_progress", "sso_logout", "completed", "partial", "failed", "cancelled"
]


@router.get("/requests", response_model=RequestPage)
async def list_requests(
    principal: Annotated[Principal, Depends(require("requests:read"))],
    deps: Annotated[handlers.Deps, Depends(_deps)],
    subject: Annotated[str | None, Query(max_length=256)] = None,
    status: StatusFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RequestPage:
    try:
        items, next_cursor = await deps.store.list(
            subject=subject, status=status, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise Problem(400, "invalid cursor", slug="invalid-cursor") from exc
    # A caller limited to sites sees only theirs (a page may then hold fewer items).
    mine = [RequestView.of(s) for s in items if principal.sees_site(s.subject.site)]
    return RequestPage(items=mine, next_cursor=next_cursor)


@router.delete("/requests/{request_id}", response_model=RequestView)
async def cancel_request(
    request_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require("offboard:write"))],
    deps: Annotated[handlers.Deps, Depends(_deps)],
) -> RequestView:
    await visible(deps, request_id, principal)
    transition = await handlers.cancel(deps, request_id)
    if transition is None:
        current = await deps.store.load(request_id)
        status = current.state.status if current else "unknown"
        raise Problem(
            409,
            f"only a scheduled request, or the later phases of an offboarding not started "
            f"yet, can be cancelled; this one is {status}",
            slug="not-cancellable",
        )
    return RequestView.of(transition.state)
