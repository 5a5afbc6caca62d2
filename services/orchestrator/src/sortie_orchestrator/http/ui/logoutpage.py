"""The user's own logout page: where the ENT sends the browser right after "Se déconnecter".

`POST /v1/logouts` answers a `progress_url`, `/logout/<token>`: the token is random (192
bits), only its SHA-256 is kept in Redis, bound to the request id, for `progress_ttl_s`.
The page needs no login and shows nothing of the user but the progress of their logout,
in their language: each service as it is signed out, the SSO session closed last, then
the closing message and, on a shared station (a `close_browsers` step ran) or when the
SSO session may be alive, the advice to close the browser. It refreshes itself without
JavaScript (`<noscript>` meta refresh) and follows the request live with it (server-sent
events). An unknown, expired or altered link gets a plain 404 page.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from sortie_core import services
from sortie_orchestrator import handlers
from sortie_orchestrator.http import sse
from sortie_orchestrator.http.ui import i18n
from sortie_orchestrator.http.ui.i18n import L10n
from sortie_orchestrator.http.ui.render import render, rows
from sortie_orchestrator.saga import SagaState, expected_actions

router = APIRouter(include_in_schema=False)

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}
LineState = Literal["done", "running", "retrying", "unconfirmed", "last"]


def _key(token: str) -> str:
    return "sortie:progress:" + hashlib.sha256(token.encode()).hexdigest()


def new_link() -> tuple[str, str]:
    """A new link's token and the key that will name its request (written by the
    request's create script)."""
    token = secrets.token_urlsafe(24)
    return token, _key(token)


def progress_url(request: Request, token: str) -> str:
    base = request.app.state.settings.public_url
    root = str(base).rstrip("/") if base else str(request.base_url).rstrip("/")
    return f"{root}/logout/{token}"


async def _resolve(request: Request, token: str) -> SagaState | None:
    if not _TOKEN.match(token):
        return None
    deps: handlers.Deps = request.app.state.deps
    rid = await deps.console.linked(_key(token))
    if rid is None:
        return None
    loaded = await deps.store.load(uuid.UUID(rid))
    return loaded.state if loaded else None


@dataclass(frozen=True, slots=True)
class Line:
    service: str
    action: str
    state: LineState


@dataclass(frozen=True, slots=True)
class View:
    lines: list[Line]
    status: str
    finished: bool
    close_browser: bool
    return_url: str | None


_STATE_WORDS = {
    "done": i18n.N_("Done"),
    "running": i18n.N_("In progress…"),
    "retrying": i18n.N_("Not confirmed yet: Sortie tries again"),
    "unconfirmed": i18n.N_("Not confirmed"),
    "last": i18n.N_("Last, once the others are done"),
}


def _lines(state: SagaState) -> list[Line]:
    out: list[Line] = []
    for name, svc in rows(state):
        if not svc.steps:
            for action in expected_actions(state.kind, name, state.actions):
                out.append(Line(name, action, "running"))
            continue
        for step in svc.steps:
            if step.done and step.outcome.value == "skipped":
                continue  # nothing to do there (left out on purpose): not the user's concern
            word: LineState = "done" if step.done else "unconfirmed"
            if not step.done and name in state.followups:
                word = "retrying"
            out.append(Line(name, step.action, word))
    if state.sso is None:
        for action in expected_actions(state.kind, "sso", state.actions):
            out.append(Line("sso", action, "last"))
    return out


def view(request: Request, state: SagaState) -> View:
    settings = request.app.state.settings
    shared = any(
        s.action == services.WorkstationAction.CLOSE_BROWSERS
        for name, svc in state.services.items()
        if services.host_of(name) is not None
        for s in svc.steps
    )
    return View(
        lines=_lines(state),
        status=state.status,
        finished=state.finished,
        close_browser=shared or state.status == "failed",
        return_url=str(settings.ent_public_url) if settings.ent_public_url else None,
    )


def fragment(t: L10n, v: View) -> str:
    return render(t, "logout_live.html", view=v, words=_STATE_WORDS)


def not_found(request: Request) -> HTMLResponse:
    t = i18n.from_request(request)
    return HTMLResponse(render(t, "notfound.html"), status_code=404, headers=NO_STORE)


@router.get("/logout/{token}")
async def logout_page(token: str, request: Request) -> Response:
    state = await _resolve(request, token)
    if state is None:
        return not_found(request)
    t = i18n.from_request(request)
    v = view(request, state)
    live = Markup(fragment(t, v))  # noqa: S704 (rendered autoescaped)
    after = request.app.state.settings.logout_return_after_s
    html = render(
        t,
        "logout.html",
        view=v,
        live=live,
        events_url=f"/logout/{token}/events",
        return_after=after if v.return_url and not v.close_browser else None,
    )
    return HTMLResponse(html, headers=NO_STORE)


@router.get("/logout/{token}/events")
async def logout_events(token: str, request: Request) -> Response:
    state = await _resolve(request, token)
    if state is None:
        return not_found(request)
    t = i18n.from_request(request)
    deps: handlers.Deps = request.app.state.deps
    return sse.follow(
        deps.store, request, state.request_id, lambda s: fragment(t, view(request, s))
    )
