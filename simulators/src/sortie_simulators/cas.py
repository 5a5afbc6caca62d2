"""Apereo CAS simulator: the REST ticket API and the `ssoSessions` actuator.

REST (https://apereo.github.io/cas/development/protocol/REST-Protocol.html):
`POST /cas/v1/tickets` (username, password) creates a TGT, `POST /cas/v1/tickets/{tgt}`
(service) issues a service ticket, `DELETE /cas/v1/tickets/{tgt}` destroys the SSO session.
Actuator (https://apereo.github.io/cas/development/monitoring/actuators/Actuator-Endpoint-SsoSessions.html):
`GET /cas/actuator/ssoSessions` and `DELETE /cas/actuator/ssoSessions/users/{username}`,
behind HTTP Basic auth when an actuator user is configured.

Any non-empty username and password log in. Every destroyed session is written to
`/_sim/events` with wall-clock and monotonic times, so tests can check that the SSO
session ended after every application logout.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from .common import FormError, iso_us, read_form, sleep_ms, stamp, utc_now
from .demo import (
    ALICE,
    DEFAULT_ENTAPPS_URL,
    DEMO_CAS_APPS,
    DEMO_SERVICE_TICKETS,
    DEMO_TGT,
    demo_service_url,
)

# Apereo ticket ids end with a host suffix; ours says where they come from.
TICKET_SUFFIX = "sortie-cas"


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

    def actuator_view(self) -> dict[str, Any]:
        return {
            "authenticated_principal": self.username,
            "ticket_granting_ticket": self.id,
            "authentication_date": iso_us(self.created_at),
            "authenticated_services": {t: {"id": s} for t, s in self.services.items()},
            "number_of_uses": len(self.services),
            "is_expired": False,
        }


class CasSimulator:
    def __init__(self) -> None:
        self.tgts: dict[str, Tgt] = {}
        self.events: list[dict[str, Any]] = []
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

    def delete_tgt(self, tgt_id: str) -> Tgt | None:
        tgt = self.tgts.pop(tgt_id, None)
        if tgt is not None:
            self._event("tgt_deleted", tgt.username, [tgt.id])
        return tgt

    def delete_user_sessions(self, username: str) -> list[str]:
        ids = [t.id for t in self.tgts.values() if t.username == username]
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


def _text(body: str, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return PlainTextResponse(body, status_code=status, headers=headers)


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

    async def latency() -> None:
        await sleep_ms(latency_ms)

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
        if sim.delete_tgt(tgt_id) is None:
            return _text("TGT not found", 404)
        return _text(tgt_id)

    @app.get("/cas/actuator/ssoSessions", dependencies=actuator)
    async def sso_sessions(
        kind: Annotated[str, Query(alias="type")] = "ALL", username: str | None = None
    ) -> dict[str, Any]:
        """Every live SSO session (`type` is accepted and ignored: all are direct)."""
        tgts = [t for t in sim.tgts.values() if username is None or t.username == username]
        return {
            "activeSsoSessions": [t.actuator_view() for t in tgts],
            "totalTicketGrantingTickets": len(tgts),
            "totalPrincipals": len({t.username for t in tgts}),
            "totalUsageCount": sum(len(t.services) for t in tgts),
        }

    @app.delete("/cas/actuator/ssoSessions/users/{username}", dependencies=actuator)
    async def destroy_user_sso_sessions(username: str) -> JSONResponse:
        destroyed = sim.delete_user_sessions(username)
        return JSONResponse(
            {"status": 200, "ticketGrantingTickets": dict.fromkeys(destroyed, "destroyed")}
        )

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

    return app
