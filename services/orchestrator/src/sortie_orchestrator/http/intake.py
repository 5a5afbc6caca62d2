"""The API's intake: `POST /v1/logouts` and `POST /v1/offboardings` (202 Accepted, with
an Idempotency-Key replayed rather than run twice)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from sortie_core.events import ServiceTicket, SsoSession, Subject
from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.bodies import LogoutIn, OffboardIn, SubjectIn, fingerprint
from sortie_orchestrator.http.depends import OrderDep, accepts
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.ui import logoutpage
from sortie_orchestrator.http.views import Accepted, Links
from sortie_orchestrator.profiles import Profile, Profiles

router = APIRouter(prefix="/v1")
LogoutWriter = Annotated[Principal, Depends(require("logout:write"))]
OffboardWriter = Annotated[Principal, Depends(require("offboard:write"))]


def mark_accepted(response: Response, rid: uuid.UUID, created: bool) -> Links:
    """The headers of a 202 (and of its idempotent replay); the links of its body."""
    response.headers["Location"] = f"/v1/requests/{rid}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return Links(self=f"/v1/requests/{rid}")


def _accepted(response: Response, rid: uuid.UUID, created: bool, status: str) -> Accepted:
    return Accepted(request_id=rid, status=status, links=mark_accepted(response, rid, created))


def subject_of(body: SubjectIn, principal: Principal | None = None) -> Subject:
    """The subject; a caller limited to sites may only name one of its sites."""
    if principal is not None and not principal.sees_site(body.site):
        raise Problem(403, "this subject's site is not one of this token's", slug="outside-sites")
    return Subject(**body.model_dump())


@accepts(router, "/logouts", Accepted, "Sign a user out everywhere, SSO session last")
async def post_logout(body: LogoutIn, principal: LogoutWriter, order: OrderDep) -> Accepted:
    request = order.request
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
        order.deps,
        subject=subject_of(body.subject, principal),
        reason=body.reason,
        targets=list(body.targets),
        sso_session=sso,
        idempotency_key=order.idempotency_key,
        principal=principal.name,
        fingerprint=fingerprint("logout", body),
        progress=(link, request.app.state.settings.progress_ttl_s),
    )
    accepted = _accepted(order.response, rid, created, "accepted")
    return accepted.model_copy(update={"progress_url": logoutpage.progress_url(request, token)})


@accepts(router, "/offboardings", Accepted, "Offboard a user now or at `effective_at`")
async def post_offboarding(
    body: OffboardIn, principal: OffboardWriter, order: OrderDep
) -> Accepted:
    max_days = order.request.app.state.settings.max_schedule_days
    if body.effective_at is not None and body.effective_at > datetime.now(UTC) + timedelta(
        days=max_days
    ):
        raise Problem(
            422, f"effective_at is more than {max_days} days ahead", slug="invalid-request"
        )
    intake = await handlers.offboard(
        order.deps,
        subject=subject_of(body.subject, principal),
        reason=body.reason,
        requested_by=principal.name,
        actions=list(body.actions or []),
        effective_at=body.effective_at,
        idempotency_key=order.idempotency_key,
        principal=principal.name,
        fingerprint=fingerprint("offboard", body),
        profile=_profile(order.request, body),
    )
    state = intake.state
    if state is None:
        # A replay: the first request's own status and profile.
        loaded = await order.deps.store.load(intake.request_id)
        state = loaded.state if loaded else None
    status = "scheduled" if state is not None and state.status == "scheduled" else "accepted"
    accepted = _accepted(order.response, intake.request_id, intake.created, status)
    return accepted.model_copy(update={"profile": state.profile if state else None})


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
