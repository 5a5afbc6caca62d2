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
session ended after every application logout.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from .cas_login import install_login
from .common import FormError, iso_us, read_form, sleep_ms, stamp, utc_now
from .demo import (
    ALICE,
    DEFAULT_ENTAPPS_URL,
    DEMO_CAS_APPS,
    DEMO_CAS_PEOPLE,
    DEMO_SERVICE_TICKETS,
    DEMO_TGT,
    demo_service_url,
)

# Apereo ticket ids end with a host suffix; ours says where they come from.
TICKET_SUFFIX = "sortie-cas"
# What Jackson's default typing writes for a CAS service, and Apereo's default TGT policy.
SERVICE_CLASS = "org.apereo.cas.authentication.principal.SimpleWebApplicationServiceImpl"
TGT_POLICY = "TicketGrantingTicketExpirationPolicy"


def iso_standard(moment: datetime) -> str:
    """Apereo's `ISOStandardDateFormat`: `yyyy-MM-dd'T'HH:mm:ss.SSSZ`."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


@dataclass
class Tgt:
    id: str
    username: str
    created_at: datetime
    # service ticket -> service URL, in the order they were issued
    services: dict[str, str] = field(default_factory=dict)

    def sso_view(self) -> dict[str, Any]:
        return {
            "tgt": self.id,
            "service_tickets": [{"service": s, "ticket": t} for t, s in self.services.items()],
        }

    def sim_view(self) -> dict[str, Any]:
        return {
            "tgt": self.id,
            "user": self.username,
            "created_at": iso_us(self.created_at),
            "services": [{"service": s, "ticket": t} for t, s in self.services.items()],
        }

    def actuator_view(self, *, direct: bool = False) -> dict[str, Any]:
        """One entry of `activeSsoSessions`, keys in Apereo's order."""
        view: dict[str, Any] = {
            "authenticated_principal": self.username,
            "authentication_date": iso_us(self.created_at),
            "authentication_date_formatted": iso_standard(self.created_at),
            "creation_date_formatted": iso_standard(self.created_at),
            "last_used_date_formatted": iso_standard(self.created_at),
            "number_of_uses": len(self.services),
            "ticket_granting_ticket": self.id,
            "principal_attributes": {},
            "authentication_attributes": {},
            "expiration_policy": {
                "timeToIdle": 7200,
                "timeToLive": 28800,
                "clock": "SystemClock[Z]",
                "name": TGT_POLICY,
            },
            "remember_me": False,
        }
        if not direct:
            view["is_proxied"] = False
        view["authenticated_services"] = {
            ticket: {
                "@class": SERVICE_CLASS,
                "id": url,
                "originalUrl": url,
                "principal": self.username,
                "source": "service",
                "tenant": None,
            }
            for ticket, url in self.services.items()
        }
        return view


@dataclass
class CasFaults:
    # Accept every delete (200, as usual) and destroy nothing.
    keep_sessions_on_delete: bool = False
    # The REST module is not deployed: 404 on every /cas/v1/tickets request.
    tickets_api_missing: bool = False
    # The CAS is down (behind its load balancer): 503 on everything but /_sim.
    down: bool = False


class CasSimulator:
    def __init__(self) -> None:
        self.tgts: dict[str, Tgt] = {}
        self.events: list[dict[str, Any]] = []
        self.faults = CasFaults()
        self._serial = itertools.count(1)

    def _ticket_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._serial)}-{secrets.token_urlsafe(24)}-{TICKET_SUFFIX}"

    def create_tgt(self, username: str, tgt_id: str | None = None) -> Tgt:
        tgt = Tgt(tgt_id or self._ticket_id("TGT"), username, utc_now())
        self.tgts[tgt.id] = tgt
        return tgt

    def grant(self, tgt: Tgt, service: str, ticket: str | None = None) -> str:
        ticket = ticket or self._ticket_id("ST")
        tgt.services[ticket] = service
        return ticket

    def newest_tgt(self, username: str) -> Tgt | None:
        mine = [t for t in self.tgts.values() if t.username == username]
        return mine[-1] if mine else None

    def sessions_of(self, username: str | None) -> list[Tgt]:
        """Sorted by TGT id; the user matched case-insensitively, as Apereo does."""
        wanted = username.lower() if username else None
        return sorted(
            (t for t in self.tgts.values() if wanted is None or t.username.lower() == wanted),
            key=lambda t: t.id,
        )

    def delete_tgt(self, tgt_id: str) -> Tgt | None:
        tgt = self.tgts.get(tgt_id)
        if tgt is not None and not self.faults.keep_sessions_on_delete:
            del self.tgts[tgt_id]
            self._event("tgt_deleted", tgt.username, [tgt.id])
        return tgt

    def delete_user_sessions(self, username: str) -> list[str]:
        ids = [t.id for t in self.sessions_of(username)]
        if not self.faults.keep_sessions_on_delete:
            for tgt_id in ids:
                del self.tgts[tgt_id]
            self._event("sso_sessions_deleted", username, ids)
        return ids

    def _event(self, what: str, username: str, tgts: list[str]) -> None:
        self.events.append(
            {
                **stamp(),
                "what": what,
                "username": username,
                "tgt": tgts[0] if tgts else None,
                "tgts": tgts,
            }
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

    @app.middleware("http")
    async def outage(request: Request, call_next: Any) -> Any:
        if sim.faults.down and not request.url.path.startswith("/_sim"):
            return _text("Service Unavailable", 503)
        return await call_next(request)

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
        sim.delete_tgt(tgt_id)
        return Response(status_code=200)

    def listing(sessions: list[Tgt], *, direct: bool = False) -> dict[str, Any]:
        return {
            "activeSsoSessions": [t.actuator_view(direct=direct) for t in sessions],
            "totalSsoSessions": len(sim.tgts),
        }

    @app.get("/cas/actuator/ssoSessions", dependencies=actuator)
    async def sso_sessions(
        kind: Annotated[str, Query(alias="type")] = "ALL",
        username: str | None = None,
        start: Annotated[int, Query(alias="from", ge=0)] = 0,
        count: Annotated[int, Query(ge=0)] = 1000,
    ) -> dict[str, Any]:
        """Every live SSO session (no proxied ones here: PROXIED lists none)."""
        if kind not in ("ALL", "DIRECT", "PROXIED"):
            raise HTTPException(400, f"unknown type {kind!r}")
        found = [] if kind == "PROXIED" else sim.sessions_of(username)
        return listing(found[start : start + count if count else None], direct=kind == "DIRECT")

    @app.get("/cas/actuator/ssoSessions/users/{username}", dependencies=actuator)
    async def user_sso_sessions(username: str) -> dict[str, Any]:
        return listing(sim.sessions_of(username))

    @app.delete("/cas/actuator/ssoSessions/users/{username}", dependencies=actuator)
    async def destroy_user_sso_sessions(username: str) -> JSONResponse:
        destroyed = sim.delete_user_sessions(username)
        return JSONResponse({tgt_id: _destroyed(tgt_id) for tgt_id in destroyed})

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
        return sim.events

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
