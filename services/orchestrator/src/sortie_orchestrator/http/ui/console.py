"""The console's actions under `/ui`: offboard a user (now or at a date) after a preview,
log a user out, cancel a scheduled offboarding, retry the failed steps of a finished
request, print a request's history; list and revoke console sessions.

Every action is a form post from this site (refuse_cross_site; the session cookie is
SameSite=Strict), asks for confirmation first (a page whose button posts `confirm=yes`),
is refused without the scope (403) and outside the person's sites (404, as if the
request did not exist), and is recorded with who did it (sessions.audit, and the
request's own `requested_by` or timeline)."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from sortie_core.events import Subject, Target, utcnow
from sortie_core.statuses import REQUEST_STATUSES
from sortie_orchestrator import handlers
from sortie_orchestrator.http import export
from sortie_orchestrator.http.actions import SCOPE_OF_KIND
from sortie_orchestrator.http.auth import Principal
from sortie_orchestrator.http.guards import refuse_cross_site
from sortie_orchestrator.http.preview import build_preview
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.ui import i18n
from sortie_orchestrator.http.ui.render import live_fragment, render
from sortie_orchestrator.http.ui.sessions import Viewer
from sortie_orchestrator.http.ui.statuspage import _deps, current_viewer, visible_request
from sortie_orchestrator.saga.retry import retry

router = APIRouter(prefix="/ui", include_in_schema=False)

SESSIONS_ADMIN = "sessions:admin"
FINAL_OR_OPEN = frozenset(REQUEST_STATUSES)


async def _form(request: Request) -> dict[str, str]:
    refuse_cross_site(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise Problem(415, "send the form", slug="unsupported-media-type")
    raw = (await request.body())[:20_000]
    try:
        pairs = parse_qs(raw.decode(), max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "the body is not a valid form", slug="malformed-body") from exc
    return {k: v[0].strip() for k, v in pairs.items()}


async def _signed_in(request: Request, scope: str) -> Viewer:
    viewer = await current_viewer(request)
    if viewer is None:
        raise Problem(401, "sign in first", slug="unauthenticated")
    if not viewer.may(scope):
        target = f"{request.method} {request.url.path}"
        await _deps(request).console.audit(viewer, "refused", target, f"no {scope}")
        raise Problem(403, f"your role lacks {scope!r}", slug="insufficient-scope")
    return viewer


def _confirm(request: Request, viewer: Viewer, **page: Any) -> HTMLResponse:
    t = i18n.from_request(request)
    return HTMLResponse(render(t, "confirm.html", viewer=viewer.name, **page))


def _subject(form: dict[str, str], viewer: Viewer) -> Subject:
    user = form.get("user_id", "")
    if not user or len(user) > 256:
        raise Problem(422, "give the user", slug="invalid-request")
    site = form.get("site") or None
    if site is None and viewer.sites is not None and len(viewer.sites) == 1:
        site = next(iter(viewer.sites))  # a person of one school acts for that school
    if viewer.sites is not None and site not in viewer.sites:
        raise Problem(403, "that site is not one of yours", slug="outside-your-sites")
    upn = form.get("upn") or None
    return Subject(user_id=user, upn=upn, site=site)


def _when(form: dict[str, str], zone: str) -> datetime | None:
    raw = form.get("at", "")
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise Problem(422, "the date is not valid", slug="invalid-request") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


@router.get("/offboard")
async def offboard_form(request: Request) -> Response:
    viewer = await _signed_in(request, "offboard:write")
    t = i18n.from_request(request)
    form = {"user_id": "", "upn": "", "site": "", "at": ""}
    sites = sorted(viewer.sites) if viewer.sites is not None else []
    html = render(t, "offboard.html", viewer=viewer.name, form=form, sites=sites, error="")
    return HTMLResponse(html)


@router.post("/offboard/preview")
async def offboard_preview(request: Request) -> Response:
    viewer = await _signed_in(request, "offboard:write")
    form = await _form(request)
    subject = _subject(form, viewer)
    settings = request.app.state.settings
    when = _when(form, settings.time_zone)
    preview = await build_preview(_deps(request), settings, subject, [], when)
    await _deps(request).console.audit(viewer, "preview", subject.user_id)
    t = i18n.from_request(request)
    fields = [(k, form.get(k, "")) for k in ("user_id", "upn", "site", "at")]
    page = render(
        t,
        "preview.html",
        viewer=viewer.name,
        preview=preview,
        fields=fields,
        when=t.when(when) if when else "",
    )
    return HTMLResponse(page)


@router.post("/offboard")
async def offboard(request: Request) -> Response:
    viewer = await _signed_in(request, "offboard:write")
    form = await _form(request)
    if form.get("confirm") != "yes":
        raise Problem(422, "confirm the offboarding from its preview", slug="not-confirmed")
    subject = _subject(form, viewer)
    deps = _deps(request)
    _created, rid = await handlers.accept_offboard(
        deps,
        subject=subject,
        reason="offboarding from the console",
        requested_by=viewer.name,
        actions=[],
        effective_at=_when(form, request.app.state.settings.time_zone),
        idempotency_key=None,
        principal=viewer.name,
    )
    await deps.console.audit(viewer, "offboard", f"{subject.user_id} {rid}")
    return RedirectResponse(f"/ui/requests/{rid}", 303)


@router.post("/logouts")
async def logout_user(request: Request) -> Response:
    viewer = await _signed_in(request, "logout:write")
    form = await _form(request)
    subject = _subject(form, viewer)
    t = i18n.from_request(request)
    if form.get("confirm") != "yes":
        return _confirm(
            request,
            viewer,
            heading=t.gettext("Log a user out"),
            question=t.gettext("Sign %(who)s out of every service now?") % {"who": subject.user_id},
            action="/ui/logouts",
            fields=[(k, form.get(k, "")) for k in ("user_id", "upn", "site")],
            button=t.gettext("Yes, log them out"),
            back="/ui/",
        )
    deps = _deps(request)
    _created, rid = await handlers.accept_logout(
        deps,
        subject=subject,
        reason="logout from the console",
        targets=[Target.M365, Target.ENT, Target.WORKSTATIONS],
        sso_session=None,
        idempotency_key=None,
        principal=viewer.name,
    )
    await deps.console.audit(viewer, "logout", f"{subject.user_id} {rid}")
    return RedirectResponse(f"/ui/requests/{rid}", 303)


async def _act_on(
    request: Request, request_id: uuid.UUID, scope: str, verb: str, what: str, question: str
) -> tuple[Viewer, bool]:
    """(viewer, confirmed); a confirmation page is raised as the response otherwise."""
    viewer = await _signed_in(request, scope)
    await visible_request(request, request_id, viewer)
    form = await _form(request)
    if form.get("confirm") == "yes":
        return viewer, True
    t = i18n.from_request(request)
    raise _Confirm(
        _confirm(
            request,
            viewer,
            heading=t.gettext(what),
            question=t.gettext(question),
            action=f"/ui/requests/{request_id}/{verb}",
            fields=[],
            button=t.gettext(what),
            back=f"/ui/requests/{request_id}",
        )
    )


class _Confirm(Exception):
    def __init__(self, page: HTMLResponse) -> None:
        self.page = page


@router.post("/requests/{request_id}/cancel")
async def cancel(request: Request, request_id: uuid.UUID) -> Response:
    try:
        viewer, _ = await _act_on(
            request,
            request_id,
            "offboard:write",
            "cancel",
            i18n.N_("Cancel this offboarding"),
            i18n.N_("The scheduled offboarding will not run. Cancel it?"),
        )
    except _Confirm as c:
        return c.page
    deps = _deps(request)
    done = await handlers.cancel(deps, request_id)
    why = "only a scheduled request can be cancelled"
    return await _done(request, viewer, "cancel", request_id, done is not None, why)


async def _done(
    request: Request, viewer: Viewer, action: str, request_id: uuid.UUID, ok: bool, why: str
) -> Response:
    """Record the action and its outcome; back to the request, or a 409 saying why not."""
    console = _deps(request).console
    await console.audit(viewer, action, str(request_id), "ok" if ok else "refused")
    if not ok:
        raise Problem(409, why, slug="not-cancellable" if action == "cancel" else "not-retryable")
    return RedirectResponse(f"/ui/requests/{request_id}", 303)


@router.post("/requests/{request_id}/retry")
async def retry_failed(request: Request, request_id: uuid.UUID) -> Response:
    try:
        viewer, _ = await _act_on(
            request,
            request_id,
            "requests:read",
            "retry",
            i18n.N_("Retry the failed steps"),
            i18n.N_("Send the steps that failed again now?"),
        )
    except _Confirm as c:
        return c.page
    deps = _deps(request)
    loaded = await deps.store.load(request_id)
    if loaded is None or not viewer.may(SCOPE_OF_KIND[loaded.state.kind]):
        raise Problem(403, "your role may not retry this request", slug="insufficient-scope")
    done = await deps.store.apply(
        request_id, lambda s: retry(s, utcnow(), deps.timeouts, viewer.name)
    )
    why = "only a partial or failed request can be retried"
    return await _done(request, viewer, "retry", request_id, done is not None, why)


@router.get("/requests/{request_id}/print")
async def print_page(request: Request, request_id: uuid.UUID) -> Response:
    viewer = await _signed_in(request, "requests:read")
    state = await visible_request(request, request_id, viewer)
    t = i18n.from_request(request)
    now = utcnow()
    live = Markup(live_fragment(t, state, now))  # noqa: S704 (rendered autoescaped)
    return HTMLResponse(render(t, "print.html", viewer=None, state=state, live=live, now=now))


@router.get("/sessions")
async def sessions_page(request: Request) -> Response:
    viewer = await _signed_in(request, SESSIONS_ADMIN)
    console = _deps(request).console
    t = i18n.from_request(request)
    items = await console.live_sessions()
    audit = await console.recent_audit()
    # Dates in the deployment's time zone, as everywhere on the pages.
    for item in items:
        item["expires_at"] = _local(t, item.get("expires_at"))
    for entry in audit:
        entry["at"] = _local(t, entry.get("at"))
    return HTMLResponse(render(t, "sessions.html", viewer=viewer.name, items=items, audit=audit))


def _local(t: i18n.L10n, raw: Any) -> str:
    try:
        return t.when(datetime.fromisoformat(str(raw)))
    except ValueError:
        return str(raw)


@router.post("/sessions/{session_id}/revoke")
async def revoke(request: Request, session_id: str) -> Response:
    viewer = await _signed_in(request, SESSIONS_ADMIN)
    form = await _form(request)
    if len(session_id) != 64:
        raise Problem(404, "no such session", slug="not-found")
    if form.get("confirm") != "yes":
        t = i18n.from_request(request)
        return _confirm(
            request,
            viewer,
            heading=t.gettext("Revoke"),
            question=t.gettext("End this console session now? Its person must sign in again."),
            action=f"/ui/sessions/{session_id}/revoke",
            fields=[],
            button=t.gettext("Revoke"),
            back="/ui/sessions",
        )
    console = _deps(request).console
    gone = await console.close_session(session_id)
    await console.audit(viewer, "revoke_session", session_id[:12], "ok" if gone else "gone")
    return RedirectResponse("/ui/sessions", 303)


@router.get("/export")
async def export_day(request: Request) -> Response:
    """One day's requests (in the deployment's time zone) of the person's sites, as the
    API's export (`GET /v1/requests:export`) gives them."""
    viewer = await _signed_in(request, "requests:read")
    q = request.query_params
    zone = ZoneInfo(request.app.state.settings.time_zone)
    try:
        day = datetime.fromisoformat(q.get("day", "")).date()
    except ValueError as exc:
        raise Problem(422, "give the day as YYYY-MM-DD", slug="invalid-request") from exc
    fmt: Literal["csv", "json"] = "json" if q.get("format") == "json" else "csv"
    since = datetime.combine(day, time.min, tzinfo=zone)
    status = q.get("status") or None
    if status is not None and status not in FINAL_OR_OPEN:
        raise Problem(422, "unknown status", slug="invalid-request")
    principal = Principal(name=viewer.name, scopes=viewer.scopes, sites=viewer.sites)
    await _deps(request).console.audit(viewer, "export", f"{day} {fmt}")
    return export.stream(
        _deps(request), principal, since, since + timedelta(days=1), status, None, fmt
    )
