"""ENT applications simulator: several applications on one port, each at `/<app>/`.

Each application speaks one logout protocol:

* `cas_slo`: CAS single logout, `POST /<app>/` or `/<app>/cas/slo` with the form field
  `logoutRequest`; ends the session whose service ticket is the `SessionIndex`. Answers
  200 to any well-formed request, known ticket or not, as CAS clients do.
* `oidc_bcl`: OpenID Connect back-channel logout, `POST /<app>/oidc/backchannel-logout`
  with the form field `logout_token`; ends the sessions of `sub` (and the one of `sid`).
  With a JWKS URL (`--jwks-url`), the token must also be signed by a key of that JWKS and
  carry the expected `iss`, `aud` (the app's client id, by default its name), `iat`, `exp`.
* `http`: `POST /<app>/api/logout` with JSON `{"user": ...}` and a bearer token; 204 even
  when the user had no session (logout is idempotent).

Every message received, accepted or not, is recorded in order under `/_sim/received`.
A failing app (`--fail-app`) answers 503 to everything.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .common import FormError, bearer_token, iso_us, read_form, sleep_ms, stamp, utc_now
from .demo import ALICE, DEMO_APPS, DEMO_SERVICE_TICKETS
from .entapps_admin import add_admin_routes
from .entapps_oidc import LogoutTokenVerifier
from .logout_messages import InvalidLogoutMessage, parse_logout_request, parse_logout_token

PROTOCOLS = ("cas_slo", "oidc_bcl", "http")
APP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass
class AppSession:
    user: str
    ticket: str | None = None
    sid: str | None = None
    created_at: datetime = field(default_factory=utc_now)

    def view(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "ticket": self.ticket,
            "sid": self.sid,
            "created_at": iso_us(self.created_at),
        }


@dataclass
class App:
    name: str
    protocol: str
    sessions: list[AppSession] = field(default_factory=list)


class EntAppsSimulator:
    def __init__(self, *, latency_ms: float = 0.0, fail_apps: Iterable[str] = ()) -> None:
        self.apps: dict[str, App] = {}
        self.received: list[dict[str, Any]] = []
        self.latency_ms = latency_ms
        self.fail_apps: set[str] = set(fail_apps)

    def add_app(self, name: str, protocol: str) -> App:
        if not APP_NAME.fullmatch(name):
            raise ValueError(f"invalid app name {name!r}: lower-case letters, digits, - and _")
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: one of {', '.join(PROTOCOLS)}")
        existing = self.apps.get(name)
        if existing is not None:
            if existing.protocol != protocol:
                raise ValueError(f"app {name!r} already exists with protocol {existing.protocol}")
            return existing
        self.apps[name] = App(name, protocol)
        return self.apps[name]

    def add_session(
        self, app: App, user: str, ticket: str | None = None, sid: str | None = None
    ) -> AppSession:
        if app.protocol == "cas_slo" and ticket is None:
            ticket = f"ST-sim-{secrets.token_urlsafe(16)}"
        if ticket is not None and any(s.ticket == ticket for s in app.sessions):
            raise ValueError(f"ticket {ticket!r} already has a session in {app.name}")
        session = AppSession(user, ticket, sid)
        app.sessions.append(session)
        return session

    def end_sessions(
        self,
        app: App,
        *,
        ticket: str | None = None,
        user: str | None = None,
        sid: str | None = None,
    ) -> int:
        """End the sessions matching any of the given keys; returns how many ended."""

        def matches(s: AppSession) -> bool:
            return (
                (ticket is not None and s.ticket == ticket)
                or (user is not None and s.user == user)
                or (sid is not None and s.sid == sid)
            )

        before = len(app.sessions)
        app.sessions = [s for s in app.sessions if not matches(s)]
        return before - len(app.sessions)

    def record(
        self,
        app: str,
        protocol: str,
        *,
        user: str | None = None,
        session_index: str | None = None,
        accepted: bool,
        reason: str,
        ended: int = 0,
    ) -> None:
        self.received.append(
            {
                **stamp(),
                "app": app,
                "protocol": protocol,
                "user": user,
                "session_index": session_index,
                "accepted": accepted,
                "reason": reason,
                "sessions_ended": ended,
            }
        )


def load_demo(sim: EntAppsSimulator) -> None:
    for name, protocol in DEMO_APPS:
        app = sim.add_app(name, protocol)
        sim.add_session(app, ALICE.username, ticket=DEMO_SERVICE_TICKETS.get(name))


def _error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def create_app(
    *,
    apps: Iterable[tuple[str, str]] = (),
    seed_demo: bool = False,
    latency_ms: float = 0.0,
    fail_apps: Iterable[str] = (),
    jwks_url: str | None = None,
    oidc_issuer: str | None = None,
    client_ids: Mapping[str, str] | None = None,
) -> FastAPI:
    sim = EntAppsSimulator(latency_ms=latency_ms, fail_apps=fail_apps)
    verifier = LogoutTokenVerifier(jwks_url, issuer=oidc_issuer) if jwks_url else None
    audiences = dict(client_ids or {})
    for name, protocol in apps:
        sim.add_app(name, protocol)
    if seed_demo:
        load_demo(sim)
    api = FastAPI(title="Sortie ENT applications simulator", docs_url="/_sim/docs")
    api.state.sim = sim
    add_admin_routes(api, sim)

    async def enter(name: str, protocol: str) -> App | Response:
        """Latency, then the app if it exists, is up and speaks `protocol`."""
        await sleep_ms(sim.latency_ms)
        app = sim.apps.get(name)
        if app is None or app.protocol != protocol:
            reason = "unknown app" if app is None else f"app speaks {app.protocol}"
            sim.record(name, protocol, accepted=False, reason=reason)
            return _error(404, "not_found", f"{reason}: no {protocol} endpoint here")
        if name in sim.fail_apps:
            sim.record(name, protocol, accepted=False, reason="app unavailable (503)")
            return _error(503, "temporarily_unavailable", f"{name} is down")
        return app

    async def cas_single_logout(app_name: str, request: Request) -> Response:
        app = await enter(app_name, "cas_slo")
        if isinstance(app, Response):
            return app
        try:
            form = await read_form(request)
            xml = form.get("logoutRequest")
            if not xml:
                raise InvalidLogoutMessage("form field logoutRequest is missing")
            message = parse_logout_request(xml)
        except (FormError, InvalidLogoutMessage) as exc:
            status = exc.status if isinstance(exc, FormError) else 400
            sim.record(app.name, app.protocol, accepted=False, reason=str(exc))
            return _error(status, "invalid_request", str(exc))
        ended = sim.end_sessions(app, ticket=message.session_index)
        sim.record(
            app.name,
            app.protocol,
            user=message.name_id,
            session_index=message.session_index,
            accepted=True,
            reason="session ended" if ended else "no session for this ticket",
            ended=ended,
        )
        return Response(status_code=200)

    for path in ("/{app_name}", "/{app_name}/", "/{app_name}/cas/slo"):
        api.add_api_route(path, cas_single_logout, methods=["POST"], name=f"slo {path}")

    @api.post("/{app_name}/oidc/backchannel-logout")
    async def backchannel_logout(app_name: str, request: Request) -> Response:
        app = await enter(app_name, "oidc_bcl")
        if isinstance(app, Response):
            return app
        try:
            form = await read_form(request)
            if not form.get("logout_token"):
                raise InvalidLogoutMessage("form field logout_token is missing")
            token = parse_logout_token(form["logout_token"])
            if verifier is not None:
                await verifier.verify(
                    form["logout_token"], audience=audiences.get(app.name, app.name)
                )
        except (FormError, InvalidLogoutMessage) as exc:
            status = exc.status if isinstance(exc, FormError) else 400
            sim.record(app.name, app.protocol, accepted=False, reason=str(exc))
            return _error(status, "invalid_request", str(exc))
        ended = sim.end_sessions(app, user=token.sub, sid=token.sid)
        sim.record(
            app.name,
            app.protocol,
            user=token.sub,
            session_index=token.sid,
            accepted=True,
            reason="session ended" if ended else "no session for this subject",
            ended=ended,
        )
        return Response(status_code=200, headers={"Cache-Control": "no-store"})

    @api.post("/{app_name}/api/logout")
    async def api_logout(app_name: str, request: Request) -> Response:
        app = await enter(app_name, "http")
        if isinstance(app, Response):
            return app
        if bearer_token(request) is None:
            sim.record(app.name, app.protocol, accepted=False, reason="no bearer token")
            return _error(401, "invalid_token", "Authorization: Bearer <token> is required")
        try:
            body = await request.json()
        except ValueError:
            body = None
        user = body.get("user") if isinstance(body, dict) else None
        if not isinstance(user, str) or not user:
            sim.record(app.name, app.protocol, accepted=False, reason="body needs a user")
            return _error(400, "invalid_request", 'expected JSON {"user": "<username>"}')
        ended = sim.end_sessions(app, user=user)
        sim.record(
            app.name,
            app.protocol,
            user=user,
            accepted=True,
            reason="session ended" if ended else "no session for this user",
            ended=ended,
        )
        return Response(status_code=204)

    return api
