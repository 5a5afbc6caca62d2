"""The CAS simulator's browser login and CAS 3.0 service validation, as Apereo CAS does
them (CAS Protocol 3.0 Specification, https://apereo.github.io/cas/development/protocol/
CAS-Protocol-Specification.html):

- `GET /cas/login?service=URL` (§2.1): with the CAS's ticket-granting cookie (TGC) of a
  live SSO session, redirects at once to `service` with `ticket=ST-…` (§2.1.1, single
  sign-on); otherwise shows the credential form. `renew=true` always asks for credentials.
- `POST /cas/login` (§2.2, the credential acceptor): username, password and the form's
  `execution` (Apereo's login flow token, standing in for the spec's `lt`); on success a
  new TGT (an SSO session, visible in the `ssoSessions` actuator like any other), the TGC
  cookie, and a 302 to `service?ticket=ST-…`. Any non-empty username and password log in.
- `GET /cas/p3/serviceValidate?service=URL&ticket=ST-…` (§2.5, §2.8): the XML
  `cas:serviceResponse` with `cas:user` and `cas:attributes` (the CAS 3.0 addition), or
  `cas:authenticationFailure` with the codes of §2.5.3: INVALID_REQUEST (a parameter is
  missing), INVALID_TICKET_SPEC (not an `ST-`), INVALID_TICKET (unknown, already
  validated, or expired) and INVALID_SERVICE (issued for another service; the ticket is
  then invalidated, §2.5.1). A service ticket is valid once only (§3.1.1) and for
  `ST_TTL_S` seconds (Apereo's default `cas.ticket.st.time-to-kill-in-seconds` is 10).

Principal attributes (e.g. `memberOf`, `uai`) are set per user with
`PUT /_sim/users/{username}/attributes`.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from . import signin_page
from .common import FormError, read_form

if TYPE_CHECKING:
    from .cas import CasSimulator

TGC = "TGC"
ST_TTL_S = 10.0
CAS_NS = "http://www.yale.edu/tp/cas"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def _with_ticket(service: str, ticket: str) -> str:
    parts = urlsplit(service)
    query = [*parse_qsl(parts.query, keep_blank_values=True), ("ticket", ticket)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _xml(body: str) -> Response:
    text = f'<cas:serviceResponse xmlns:cas="{CAS_NS}">\n{body}\n</cas:serviceResponse>\n'
    return Response(text, media_type="application/xml;charset=UTF-8")


def _failure(code: str, message: str) -> Response:
    return _xml(
        f'  <cas:authenticationFailure code="{code}">{escape(message)}</cas:authenticationFailure>'
    )


def _success(user: str, attributes: dict[str, list[str]]) -> Response:
    attrs = "".join(
        f"      <cas:{name}>{escape(value)}</cas:{name}>\n"
        for name, values in sorted(attributes.items())
        for value in values
    )
    return _xml(
        "  <cas:authenticationSuccess>\n"
        f"    <cas:user>{escape(user)}</cas:user>\n"
        f"    <cas:attributes>\n{attrs}    </cas:attributes>\n"
        "  </cas:authenticationSuccess>"
    )


HEADING = {"fr": "Connexion CAS", "en": "CAS sign-in"}


def _form(request: Request, service: str, execution: str, error: str | None = None) -> HTMLResponse:
    hidden = {"service": service, "execution": execution}
    return signin_page.page(
        request, heading=HEADING, action="/cas/login", hidden=hidden, error=error
    )


def _validate(
    sim: CasSimulator,
    issued: dict[str, tuple[str, float]],
    attributes: dict[str, dict[str, list[str]]],
    service: str,
    ticket: str,
) -> Response:
    """§2.5: the ticket, once, for its own service, within its time to live."""
    if not service or not ticket:
        return _failure("INVALID_REQUEST", "service and ticket are required")
    if not ticket.startswith("ST-"):
        return _failure("INVALID_TICKET_SPEC", f"Ticket {ticket} is not a service ticket")
    found = issued.pop(ticket, None)
    if found is None or time.monotonic() - found[1] > ST_TTL_S:
        return _failure("INVALID_TICKET", f"Ticket {ticket} not recognized")
    if found[0] != service:
        return _failure("INVALID_SERVICE", f"Ticket {ticket} does not match {service}")
    owner = next((t for t in sim.tgts.values() if ticket in t.services), None)
    if owner is None:
        return _failure("INVALID_TICKET", f"Ticket {ticket} not recognized")
    return _success(owner.username, attributes.get(owner.username, {}))


def install_login(
    app: FastAPI, sim: CasSimulator, attributes: dict[str, dict[str, list[str]]] | None = None
) -> None:
    """Adds the login, the service validation (`issued`: ticket -> service, when; used once)
    and the attributes route; `attributes`: username -> name -> values, to start with."""
    issued: dict[str, tuple[str, float]] = {}
    executions: set[str] = set()
    attributes = {u: dict(a) for u, a in (attributes or {}).items()}

    def issue(tgt_id: str, service: str) -> str:
        ticket = sim.grant(sim.tgts[tgt_id], service)
        issued[ticket] = (service, time.monotonic())
        return ticket

    @app.get("/cas/login", response_model=None)
    async def login_form(request: Request, service: str = "", renew: str = "") -> Response:
        tgc = request.cookies.get(TGC)
        if service and tgc in sim.tgts and renew != "true":
            return RedirectResponse(_with_ticket(service, issue(tgc, service)), 302)
        execution = secrets.token_urlsafe(16)
        executions.add(execution)
        return _form(request, service, execution)

    @app.post("/cas/login", response_model=None)
    async def login_submit(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as exc:
            return _form(request, "", "", str(exc))
        service = form.get("service", "")
        execution = form.get("execution", "")
        username, password = form.get("username", ""), form.get("password", "")
        known = execution in executions
        executions.discard(execution)  # each form is used once
        if not known or not username or not password:
            fresh = secrets.token_urlsafe(16)
            executions.add(fresh)
            return _form(request, service, fresh, "wrong" if known else "expired")
        tgt = sim.create_tgt(username)
        target = _with_ticket(service, issue(tgt.id, service)) if service else "/cas/login"
        response = RedirectResponse(target, 302)
        response.set_cookie(TGC, tgt.id, httponly=True, samesite="lax", path="/cas")
        return response

    @app.get("/cas/p3/serviceValidate")
    async def service_validate(service: str = "", ticket: str = "") -> Response:
        return _validate(sim, issued, attributes, service, ticket)

    _install_attributes(app, attributes)


def _install_attributes(app: FastAPI, attributes: dict[str, dict[str, list[str]]]) -> None:
    """`PUT /_sim/users/{username}/attributes`: the principal's attributes (XML names)."""

    @app.put("/_sim/users/{username}/attributes")
    async def set_attributes(username: str, values: dict[str, list[str]]) -> dict[str, Any]:
        bad = [k for k in values if not _NAME.fullmatch(k)]
        if bad:
            raise HTTPException(422, f"attribute names must be XML names: {bad}")
        attributes[username] = {k: [str(v) for v in vs] for k, vs in values.items()}
        return {"username": username, "attributes": attributes[username]}
