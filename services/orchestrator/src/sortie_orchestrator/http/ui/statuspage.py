"""The helpdesk status page under `/ui`: sign in with an API token (scope `requests:read`),
recent requests filtered by user and status, and one request's timeline updated live by
server-sent events. The token is exchanged once for a session: a random id in an HttpOnly,
SameSite=Strict cookie, whose hash keys the session in Redis (8 hours). The session holds
the token's SHA-256, checked against the configured tokens on every request: once the
token is removed (or loses `requests:read`), its sessions are worth nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
)

from sortie_core.events import utcnow
from sortie_core.statuses import REQUEST_STATUSES
from sortie_orchestrator import handlers
from sortie_orchestrator.http import sse
from sortie_orchestrator.http.guards import limiter, refuse_cross_site
from sortie_orchestrator.http.problems import Problem, problem_response
from sortie_orchestrator.http.security import is_secure
from sortie_orchestrator.http.ui import i18n, sessions
from sortie_orchestrator.http.ui.render import live_fragment, render, request_page
from sortie_orchestrator.http.ui.sessions import Viewer
from sortie_orchestrator.saga import SagaState
from sortie_orchestrator.settings import match_token

router = APIRouter(prefix="/ui", include_in_schema=False)

COOKIE = "sortie_session"
SESSION_TTL_S = 8 * 3600
SCOPE = "requests:read"
_STATIC = Path(__file__).parent / "static"
_STATUSES = ["", *REQUEST_STATUSES]


def _deps(request: Request) -> handlers.Deps:
    deps: handlers.Deps = request.app.state.deps
    return deps


async def current_viewer(request: Request) -> Viewer | None:
    """Who is signed in (sessions.py): a token session is worth nothing once its token is
    removed or loses `requests:read`; an SSO session holds what its roles gave."""
    sid = request.cookies.get(COOKIE)
    if not sid or len(sid) > 100:
        return None
    console = _deps(request).console
    key = sessions.session_hash(sid)
    data = await console.load(key)
    if data is None:
        return None
    if data.get("via", "token") != "token":
        sites = data.get("sites")
        return Viewer(
            name=str(data["name"]),
            via=str(data["via"]),
            scopes=frozenset(data.get("scopes") or ()),
            sites=frozenset(sites) if sites is not None else None,
            session=key,
        )
    try:
        digest = bytes.fromhex(data["digest"])
    except (ValueError, KeyError, TypeError):
        digest = b""  # a session of an older version: bound to no token
    found = _token(request.app.state.token_table, digest)
    if found is None:
        await console.close_session(key)
        return None
    sites = request.app.state.token_sites.get(found[0])
    return Viewer(name=found[0], via="token", scopes=found[1], sites=sites, session=key)


def _token(
    table: list[tuple[bytes, str, frozenset[str]]], digest: bytes
) -> tuple[str, frozenset[str]] | None:
    """The configured token with this digest and the page's scope."""
    found = None
    for known, name, scopes in table:
        if hmac.compare_digest(known, digest) and SCOPE in scopes:
            found = (name, scopes)
    return found


async def visible_request(request: Request, request_id: uuid.UUID, viewer: Viewer) -> SagaState:
    """The request if it is of the viewer's sites; a 404 otherwise, as if it did not exist."""
    loaded = await _deps(request).store.load(request_id)
    if loaded is None or not viewer.sees_site(loaded.state.subject.site):
        raise Problem(404, f"no request {request_id}", slug="not-found")
    return loaded.state


async def start_session(
    request: Request, viewer: Viewer, resp: Response, digest: str | None = None
) -> Response:
    """A new session for `viewer` (sessions.py), its cookie set on `resp`."""
    sid = secrets.token_urlsafe(32)
    await _deps(request).console.open_session(sid, viewer, SESSION_TTL_S, digest)
    resp.set_cookie(
        COOKIE,
        sid,
        max_age=SESSION_TTL_S,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=is_secure(request.scope, request.app.state.settings.force_secure),
    )
    return resp


_NEXT = re.compile(r"^/ui/(?!/)[A-Za-z0-9/_.?=&%-]{0,250}$")


def _safe_next(value: str | None) -> str:
    """Only a page of this site: never another host (`//evil`), nothing to escape."""
    if value and _NEXT.match(value) and "//" not in value:
        return value
    return "/ui/"


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(_safe_next(target), safe='/')}", 303)


def _login_page(
    request: Request, next_url: str, error: str = "", status: int = 200
) -> HTMLResponse:
    t = i18n.from_request(request)
    sso = request.app.state.settings.console_sso
    buttons = []
    if sso is not None and sso.cas is not None:
        buttons.append(("/ui/login/cas/start", sso.cas.label))
    if sso is not None and sso.oidc is not None:
        buttons.append(("/ui/login/oidc/start", sso.oidc.label))
    html = render(
        t, "login.html", viewer=None, next=next_url, error=error, scope=SCOPE, sso=buttons
    )
    return HTMLResponse(html, status_code=status)


@router.get("/login")
async def login_form(
    request: Request, next: Annotated[str | None, Query(max_length=300)] = None
) -> HTMLResponse:
    return _login_page(request, _safe_next(next))


@router.post("/login")
async def login(request: Request) -> Response:
    refuse_cross_site(request)
    failures = limiter(request)
    failures.check(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    as_json = ctype == "application/json"
    try:
        if as_json:
            data: Any = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError
            token, next_url = data.get("token"), data.get("next")
        elif ctype == "application/x-www-form-urlencoded":
            form = parse_qs(raw.decode(), max_num_fields=5)
            token, next_url = form.get("token", [None])[0], form.get("next", [None])[0]
        else:
            raise Problem(415, "send the form or application/json", slug="unsupported-media-type")
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, "the body is not a valid form", slug="malformed-body") from exc
    next_url = _safe_next(next_url if isinstance(next_url, str) else None)
    found = None
    if isinstance(token, str) and 0 < len(token) <= 512:
        found = match_token(request.app.state.token_table, token.strip())
    if found is None or SCOPE not in found[1]:
        refused = i18n.N_("This token was refused.")
        why = refused if found is None else i18n.N_("This token lacks requests:read.")
        failures.failed(request, "status page sign-in: " + why)
        if as_json:
            return problem_response(401, why, slug="unauthenticated")
        return _login_page(request, next_url, i18n.from_request(request).gettext(why), 401)
    digest = hashlib.sha256(token.strip().encode()).hexdigest()  # type: ignore[union-attr]
    sites = request.app.state.token_sites.get(found[0])
    viewer = Viewer(name=found[0], via="token", scopes=found[1], sites=sites)
    await _deps(request).console.audit(viewer, "sign_in", "console")
    resp: Response = Response(status_code=204) if as_json else RedirectResponse(next_url, 303)
    return await start_session(request, viewer, resp, digest)


@router.post("/logout")
async def logout(request: Request) -> Response:
    refuse_cross_site(request)
    sid = request.cookies.get(COOKIE)
    viewer = await current_viewer(request)
    if sid and len(sid) <= 100:
        await _deps(request).console.close_session(sessions.session_hash(sid))
    if viewer is not None:
        await _deps(request).console.audit(viewer, "sign_out", "console")
    resp = RedirectResponse("/ui/login", 303)
    resp.delete_cookie(COOKIE, path="/ui")
    return resp


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in ("app.css", "app.js"):
        raise Problem(404, "no such file", slug="not-found")
    media = "text/css" if name.endswith(".css") else "text/javascript"
    return FileResponse(_STATIC / name, media_type=media)


@router.get("/")
async def list_page(
    request: Request,
    deps: Annotated[handlers.Deps, Depends(_deps)],
    user: Annotated[str | None, Query(max_length=256)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    site: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    viewer = await current_viewer(request)
    if viewer is None:
        return _to_login(request)
    if status and status not in _STATUSES:
        raise Problem(422, f"unknown status {status[:20]!r}", slug="invalid-request")
    try:
        items, next_cursor = await deps.store.list(
            subject=user or None, status=status or None, limit=50, cursor=cursor
        )
    except ValueError as exc:
        raise Problem(400, "invalid cursor", slug="invalid-cursor") from exc
    items = [
        s
        for s in items
        if viewer.sees_site(s.subject.site) and (not site or s.subject.site == site)
    ]
    more = ""
    if next_cursor:
        query = {"cursor": next_cursor, "user": user, "status": status, "site": site}
        more = urlencode({k: v for k, v in query.items() if v})
    html = render(
        i18n.from_request(request),
        "list.html",
        viewer=viewer.name,
        may=viewer.scopes,
        user=user or "",
        status=status or "",
        statuses=_STATUSES,
        site=site or "",
        sites=sorted(viewer.sites) if viewer.sites is not None else None,
        items=items,
        more=more,
    )
    return HTMLResponse(html)


@router.get("/requests/{request_id}")
async def request_view(
    request_id: uuid.UUID, request: Request, deps: Annotated[handlers.Deps, Depends(_deps)]
) -> Response:
    viewer = await current_viewer(request)
    if viewer is None:
        return _to_login(request)
    state = await visible_request(request, request_id, viewer)
    t = i18n.from_request(request)
    return HTMLResponse(request_page(t, state, utcnow(), viewer.name, viewer.scopes))


@router.get("/requests/{request_id}/events")
async def request_events(
    request_id: uuid.UUID, request: Request, deps: Annotated[handlers.Deps, Depends(_deps)]
) -> Response:
    viewer = await current_viewer(request)
    if viewer is None:
        raise Problem(401, "sign in first", slug="unauthenticated")
    await visible_request(request, request_id, viewer)

    t = i18n.from_request(request)

    async def signed_in() -> bool:
        return await current_viewer(request) is not None  # the session or its token may be gone

    return sse.follow(
        deps.store, request, request_id, lambda s: live_fragment(t, s, utcnow()), signed_in
    )
