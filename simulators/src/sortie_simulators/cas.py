"""Apereo CAS simulator: the REST ticket API and the `ssoSessions` actuator (the browser
login and `/p3/serviceValidate` are in cas_login.py).

REST (https://apereo.github.io/cas/development/protocol/REST-Protocol.html):
`POST /cas/v1/tickets` (username, password) creates a TGT, `POST /cas/v1/tickets/{tgt}`
(service) issues a service ticket, `DELETE /cas/v1/tickets/{tgt}` destroys the SSO session.
Like Apereo's `TicketGrantingTicketResource.deleteTicketGrantingTicket`
(apereo/cas, support/cas-server-support-rest/.../TicketGrantingTicketResource.java), the
DELETE answers 200 with an empty body for any TGT, known or not: its answer proves nothing.

Actuator, in the shape of apereo/cas's `SingleSignOnSessionsEndpoint`
(support/cas-server-support-reports/src/main/java/org/apereo/cas/web/report/
SingleSignOnSessionsEndpoint.java, https://github.com/apereo/cas/blob/master/support/cas-server-support-reports/src/main/java/org/apereo/cas/web/report/SingleSignOnSessionsEndpoint.java):
`GET /cas/actuator/ssoSessions/users/{username}` and `GET /cas/actuator/ssoSessions`
(`type`, `username`, `from`, `count`) answer `{"activeSsoSessions": [...],
"totalSsoSessions": n}` where `totalSsoSessions` counts every live session of the CAS,
not only the listed ones; `DELETE /cas/actuator/ssoSessions/users/{username}` answers one
entry per destroyed TGT, `DELETE /cas/actuator/ssoSessions/{tgt}` one for that TGT.
Apereo has no GET of one TGT's record there: a TGT is read through its user's list. Each
session lists `authenticated_services`, the TGT's services map: service ticket id -> the
service as Jackson writes `AbstractWebApplicationService` (`id`, `originalUrl`, ...), so
the service tickets and their URLs are both exposed. Behind HTTP Basic auth when an
actuator user is configured. Apereo's own single logout on destroy is not simulated.

Faults for tests (`POST /_sim/config`): `keep_sessions_on_delete` (every delete answers
as usual and destroys nothing: a CAS that lies), `tickets_api_missing` (the REST module is
absent: 404 on `/cas/v1/tickets...`).

Any non-empty username and password log in. Every destroyed session is written to
`/_sim/events` with wall-clock and monotonic times, so tests can check that the SSO
session ended after every application logout (the last `MAX_EVENTS` only).

Sessions are indexed by user, so a request costs the same with 10 or 100,000 of them.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from .cas_login import install_login
from .cas_sessions import CasSimulator, Tgt
from .common import FormError, read_form, sleep_ms
from .demo import (
    ALICE,
    DEFAULT_ENTAPPS_URL,
    DEMO_CAS_APPS,
    DEMO_CAS_PEOPLE,
    DEMO_SERVICE_TICKETS,
    DEMO_TGT,
    demo_service_url,
)


def load_demo(sim: CasSimulator, entapps_url: str) -> None:
    tgt = sim.create_tgt(ALICE.cas_username, DEMO_TGT)
    for app in DEMO_CAS_APPS:
        sim.grant(tgt, demo_service_url(entapps_url, app), DEMO_SERVICE_TICKETS[app])


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    services: list[str] = Field(default_factory=list, max_length=100)


class FaultsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep_sessions_on_delete: bool | None = None
    tickets_api_missing: bool | None = None
    down: bool | None = None


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(body, status_code=status, headers=headers)


def _destroyed(tgt_id: str) -> dict[str, Any]:
    # What `destroySsoSession` answers; Apereo lists the logout requests it sent.
    return {"status": 200, "ticketGrantingTicket": tgt_id, "singleLogoutRequests": []}


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def user_listing(sim: CasSimulator, sessions: list[Tgt], *, direct: bool = False) -> Response:
    # A response, not a dict: FastAPI would validate the dict against the annotation.
    return JSONResponse(
        {
            "activeSsoSessions": [t.actuator_view(direct=direct) for t in sessions],
            "totalSsoSessions": len(sim.tgts),
        }
    )


def _user_sessions(sim: CasSimulator, username: str) -> Response:
    return user_listing(sim, sim.sessions_of(username))


def _destroy_user_sessions(sim: CasSimulator, username: str) -> Response:
    destroyed = sim.delete_user_sessions(username)
    return JSONResponse({tgt_id: _destroyed(tgt_id) for tgt_id in destroyed})


def _destroy_tgt(sim: CasSimulator, tgt_id: str) -> Response:
    sim.delete_tgt(tgt_id)
    return Response(status_code=200)


# What Sortie calls for every request (discovery, the destroy, its read-back): method, the
# path as Starlette matches a route with a `str` parameter (`[^/]+`), whether it is the
# REST module's, the answer.
_HOT: tuple[tuple[str, re.Pattern[str], bool, Callable[[CasSimulator, str], Response]], ...] = (
    ("GET", re.compile(r"/cas/actuator/ssoSessions/users/([^/]+)"), False, _user_sessions),
    (
        "DELETE",
        re.compile(r"/cas/actuator/ssoSessions/users/([^/]+)"),
        False,
        _destroy_user_sessions,
    ),
    ("DELETE", re.compile(r"/cas/v1/tickets/([^/]+)"), True, _destroy_tgt),
)


class FrontDoor:
    """Plain ASGI, in front of the FastAPI routes. While the CAS is `down`: 503 on
    everything but /_sim. With `hot` (no latency, no actuator credentials to check), the
    calls in `_HOT` are answered here, as their routes answer them, unless the REST module
    is `tickets_api_missing`; everything else goes to the routes. Starlette's
    BaseHTTPMiddleware ran every request through a task group and a memory stream, and
    FastAPI's dependencies and routing cost as much again as the answer."""

    def __init__(self, app: Any, sim: CasSimulator, hot: bool) -> None:
        self.app, self.sim, self.hot = app, sim, hot

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if self.sim.faults.down and not path.startswith("/_sim"):
                await _text("Service Unavailable", 503)(scope, receive, send)
                return
            hot = self.hot and not scope.get("root_path")
            answer = self._hot(scope["method"], path) if hot else None
            if answer is not None:
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _hot(self, method: str, path: str) -> Response | None:
        for verb, pattern, rest, answer in _HOT:
            if verb == method and (found := pattern.fullmatch(path)) is not None:
                if rest and self.sim.faults.tickets_api_missing:
                    return None
                return answer(self.sim, found.group(1))
        return None


def create_app(
    *,
    seed_demo: bool = False,
    entapps_url: str = DEFAULT_ENTAPPS_URL,
    actuator_user: str | None = None,
    actuator_password: str | None = None,
    latency_ms: float = 0.0,
) -> FastAPI:
    sim = CasSimulator()
    if seed_demo:
        load_demo(sim, entapps_url)
    app = FastAPI(title="Sortie CAS simulator", docs_url="/_sim/docs")
    app.state.sim = sim

    app.add_middleware(FrontDoor, sim=sim, hot=latency_ms <= 0 and actuator_user is None)

    async def latency() -> None:
        await sleep_ms(latency_ms)
        if sim.faults.tickets_api_missing:
            raise HTTPException(404, "Not Found")

    async def actuator_auth(request: Request) -> None:
        await sleep_ms(latency_ms)
        if actuator_user is None:
            return
        given = _basic_credentials(request) or ("", "")
        user_ok = secrets.compare_digest(given[0].encode(), actuator_user.encode())
        pass_ok = secrets.compare_digest(given[1].encode(), (actuator_password or "").encode())
        if not (user_ok and pass_ok):
            raise HTTPException(
                401, "Unauthorized", headers={"WWW-Authenticate": 'Basic realm="CAS actuator"'}
            )

    rest = [Depends(latency)]
    actuator = [Depends(actuator_auth)]

    @app.post("/cas/v1/tickets", dependencies=rest)
    async def create_ticket_granting_ticket(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as exc:
            return _text(str(exc), exc.status)
        username, password = form.get("username", ""), form.get("password", "")
        if not username or not password:
            return _text("username and password are required", 400)
        tgt = sim.create_tgt(username)
        location = f"{str(request.base_url).rstrip('/')}/cas/v1/tickets/{tgt.id}"
        return _text(tgt.id, 201, {"Location": location})

    @app.get("/cas/v1/tickets/{tgt_id}", dependencies=rest)
    async def ticket_granting_ticket_status(tgt_id: str) -> Response:
        return _text(tgt_id) if tgt_id in sim.tgts else _text("TGT not found", 404)

    @app.post("/cas/v1/tickets/{tgt_id}", dependencies=rest)
    async def create_service_ticket(tgt_id: str, request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as exc:
            return _text(str(exc), exc.status)
        tgt = sim.tgts.get(tgt_id)
        if tgt is None:
            return _text("TGT not found", 404)
        if not form.get("service"):
            return _text("service is required", 400)
        return _text(sim.grant(tgt, form["service"]))

    @app.delete("/cas/v1/tickets/{tgt_id}", dependencies=rest)
    async def destroy_ticket_granting_ticket(tgt_id: str) -> Response:
        return _destroy_tgt(sim, tgt_id)

    @app.get("/cas/actuator/ssoSessions", dependencies=actuator)
    async def sso_sessions(
        kind: Annotated[str, Query(alias="type")] = "ALL",
        username: str | None = None,
        start: Annotated[int, Query(alias="from", ge=0)] = 0,
        count: Annotated[int, Query(ge=0)] = 1000,
    ) -> Response:
        """Every live SSO session (no proxied ones here: PROXIED lists none)."""
        if kind not in ("ALL", "DIRECT", "PROXIED"):
            raise HTTPException(400, f"unknown type {kind!r}")
        found = [] if kind == "PROXIED" else sim.sessions_of(username)
        found = found[start : start + count if count else None]
        return user_listing(sim, found, direct=kind == "DIRECT")

    @app.get("/cas/actuator/ssoSessions/users/{username}", dependencies=actuator)
    async def user_sso_sessions(username: str) -> Response:
        return _user_sessions(sim, username)

    @app.delete("/cas/actuator/ssoSessions/users/{username}", dependencies=actuator)
    async def destroy_user_sso_sessions(username: str) -> Response:
        return _destroy_user_sessions(sim, username)

    @app.delete("/cas/actuator/ssoSessions/{tgt_id}", dependencies=actuator)
    async def destroy_sso_session(tgt_id: str) -> JSONResponse:
        sim.delete_tgt(tgt_id)
        return JSONResponse(_destroyed(tgt_id))

    # -- simulator admin ------------------------------------------------------------------
    @app.get("/_sim/users/{username}/sso")
    async def user_sso(username: str) -> dict[str, Any]:
        tgt = sim.newest_tgt(username)
        if tgt is None:
            raise HTTPException(404, f"no live SSO session for {username!r}")
        return tgt.sso_view()

    @app.get("/_sim/tickets")
    async def tickets() -> list[dict[str, Any]]:
        return [t.sim_view() for t in sim.tgts.values()]

    @app.post("/_sim/sessions", status_code=201)
    async def create_session(new: NewSession) -> dict[str, Any]:
        """A logged-in user with one service ticket per service URL, without the forms."""
        tgt = sim.create_tgt(new.username)
        for service in new.services:
            sim.grant(tgt, service)
        return tgt.sso_view()

    @app.get("/_sim/events")
    async def events() -> list[dict[str, Any]]:
        return list(sim.events)

    @app.get("/_sim/config")
    async def get_config() -> dict[str, Any]:
        return asdict(sim.faults)

    @app.post("/_sim/config")
    async def set_config(update: FaultsUpdate) -> dict[str, Any]:
        for name, value in update.model_dump(exclude_none=True).items():
            setattr(sim.faults, name, value)
        return asdict(sim.faults)

    install_login(app, sim, DEMO_CAS_PEOPLE if seed_demo else None)
    return app
