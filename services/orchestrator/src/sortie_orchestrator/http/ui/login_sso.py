"""`/ui/login/oidc` and `/ui/login/cas`: the helpdesk signs in with the school's SSO
(sso.py), and gets a console session with the scopes and sites of its roles
(sessions.py). Each sign-in is bound to a one-time state kept in Redis for 10 minutes
(OIDC `state`, with the PKCE verifier and the nonce; for CAS, a value in the service URL),
so a sign-in started elsewhere (login CSRF) or replayed is refused."""

from __future__ import annotations

import html
import json
import logging
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sortie_orchestrator.http.guards import limiter
from sortie_orchestrator.http.ui import i18n, sessions
from sortie_orchestrator.http.ui.sso import (
    ConsoleSso,
    Grant,
    OidcClient,
    SsoError,
    cas_validate,
    grant_of,
    pkce_pair,
)
from sortie_orchestrator.http.ui.statuspage import _deps, _login_page, _safe_next, start_session

log = logging.getLogger(__name__)

router = APIRouter(prefix="/ui/login", include_in_schema=False)

STATE_TTL_S = 600


def _state_key(kind: str, state: str) -> str:
    return f"sortie:ui:signin:{kind}:{sessions.session_hash(state)}"


def _sso(request: Request) -> ConsoleSso:
    sso: ConsoleSso | None = request.app.state.settings.console_sso
    if sso is None:
        raise SsoError("single sign-on is not configured")
    return sso


def _oidc(request: Request) -> OidcClient:
    settings = _sso(request).oidc
    if settings is None:
        raise SsoError("OpenID Connect sign-in is not configured")
    client: OidcClient | None = getattr(request.app.state, "console_oidc", None)
    if client is None or client.settings is not settings:
        client = request.app.state.console_oidc = OidcClient(settings)
    return client


def _callback(request: Request, path: str) -> str:
    return str(request.base_url).rstrip("/") + path


async def _take_state(request: Request, kind: str, state: str | None) -> dict[str, Any]:
    if not state or len(state) > 200:
        raise SsoError("this sign-in has no state: start again")
    raw = await _deps(request).console.take_state(_state_key(kind, state))
    if raw is None:
        raise SsoError("this sign-in expired or was already used: start again")
    data: dict[str, Any] = json.loads(raw)
    return data


def _refused(request: Request, why: str, next_url: str = "/ui/") -> Response:
    t = i18n.from_request(request)
    return _login_page(request, next_url, t.gettext("Sign-in refused: %(why)s") % {"why": why}, 401)


async def _signed_in(
    request: Request, grant: Grant | None, via: str, who: str, next_url: str
) -> Response:
    console = _deps(request).console
    if grant is None:
        await console.audit(f"{via}:{who}", "sign_in", "console", "refused: no role")
        t = i18n.from_request(request)
        return _refused(request, t.gettext("no role of yours gives access to the console"))
    viewer = sessions.Viewer(name=f"{via}:{who}", via=via, scopes=grant.scopes, sites=grant.sites)
    await console.audit(viewer, "sign_in", "console")
    # Not a redirect: this response ends a navigation that began on the SSO's site, and a
    # SameSite=Strict cookie is not sent on the rest of such a chain. A page of this site
    # that moves on by itself starts a same-site navigation, which carries it.
    target = html.escape(next_url)
    page = HTMLResponse(
        f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
        f'<title>Sortie</title><a href="{target}">Sortie</a>'
    )
    return await start_session(request, viewer, page)


@router.get("/oidc/start")
async def oidc_start(
    request: Request, next: Annotated[str | None, Query(max_length=300)] = None
) -> Response:
    try:
        client = _oidc(request)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier, challenge = pkce_pair()
        record = {"nonce": nonce, "verifier": verifier, "next": _safe_next(next)}
        await _deps(request).console.keep_state(
            _state_key("oidc", state), json.dumps(record), STATE_TTL_S
        )
        url = await client.authorization_url(
            _callback(request, "/ui/login/oidc"), state, nonce, challenge
        )
    except SsoError as exc:
        return _refused(request, str(exc))
    return RedirectResponse(url, 303)


@router.get("/oidc")
async def oidc_callback(
    request: Request,
    code: Annotated[str | None, Query(max_length=2000)] = None,
    state: Annotated[str | None, Query(max_length=200)] = None,
    error: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    try:
        saved = await _take_state(request, "oidc", state)
        if error or not code:
            # Core §3.1.2.6: the provider's own refusal (`access_denied`, ...).
            raise SsoError(f"the provider answered {error or 'no code'}")
        client = _oidc(request)
        claims = await client.redeem(
            code, saved["verifier"], _callback(request, "/ui/login/oidc"), saved["nonce"]
        )
    except SsoError as exc:
        _fail(request, "oidc", str(exc))
        return _refused(request, str(exc))
    who = str(claims.get("preferred_username") or claims["sub"])
    grant = grant_of(who, claims, _sso(request).roles)
    return await _signed_in(request, grant, "oidc", who, saved["next"])


@router.get("/cas/start")
async def cas_start(
    request: Request, next: Annotated[str | None, Query(max_length=300)] = None
) -> Response:
    try:
        settings = _sso(request).cas
        if settings is None:
            raise SsoError("CAS sign-in is not configured")
    except SsoError as exc:
        return _refused(request, str(exc))
    state = secrets.token_urlsafe(24)
    await _deps(request).console.keep_state(
        _state_key("cas", state), json.dumps({"next": _safe_next(next)}), STATE_TTL_S
    )
    service = _callback(request, "/ui/login/cas") + "?" + urlencode({"s": state})
    login = settings.server_url.rstrip("/") + "/login?" + urlencode({"service": service})
    return RedirectResponse(login, 303)


@router.get("/cas")
async def cas_callback(
    request: Request,
    s: Annotated[str | None, Query(max_length=200)] = None,
    ticket: Annotated[str | None, Query(max_length=300)] = None,
) -> Response:
    try:
        settings = _sso(request).cas
        if settings is None:
            raise SsoError("CAS sign-in is not configured")
        saved = await _take_state(request, "cas", s)
        if not ticket:
            raise SsoError("the CAS sent no ticket")
        # §2.5.1: the service must be the one the ticket was issued for, to the byte.
        service = _callback(request, "/ui/login/cas") + "?" + urlencode({"s": s})
        user, attributes = await cas_validate(settings, service, ticket)
    except SsoError as exc:
        _fail(request, "cas", str(exc))
        return _refused(request, str(exc))
    grant = grant_of(user, attributes, _sso(request).roles)
    return await _signed_in(request, grant, "cas", user, saved["next"])


def _fail(request: Request, via: str, why: str) -> None:
    limiter(request).failed(request, f"console {via} sign-in: {why}")
