"""`/ui/stations`: the stations of the person's sites with their sessions, and the orders
on them (end = log off, suspend = disconnect), through the workstation API's own order
path (http/workstations.py): confirmed first, refused without `workstations:admin`,
recorded with who asked."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from sortie_orchestrator.http.auth import Principal
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.ui import i18n
from sortie_orchestrator.http.ui.console import _confirm, _form, _signed_in
from sortie_orchestrator.http.ui.render import render
from sortie_orchestrator.http.ui.statuspage import _deps
from sortie_orchestrator.http.workstations import HostView, Target, _order, station_site

router = APIRouter(prefix="/ui/stations", include_in_schema=False)

SCOPE = "workstations:admin"
_ASK = {
    "logoff": i18n.N_("End the session of %(who)s on %(host)s?"),
    "disconnect": i18n.N_("Suspend the session of %(who)s on %(host)s? Its programs keep running."),
}
_BUTTON = {"logoff": i18n.N_("Yes, end it"), "disconnect": i18n.N_("Yes, suspend it")}


@router.get("")
async def stations_page(request: Request) -> Response:
    viewer = await _signed_in(request, SCOPE)
    deps = _deps(request)
    sites = request.app.state.settings.station_sites
    now = time.time()
    records = await deps.presence.records(hosts=await deps.presence.host_names(None))
    hosts = [
        HostView.of(host, record, now)
        for host, record in records
        if viewer.sees_site(station_site(sites, host, record.group if record else None))
    ]
    t = i18n.from_request(request)
    return HTMLResponse(render(t, "stations.html", viewer=viewer.name, hosts=hosts))


@router.post("/{host}/{action}")
async def order(request: Request, host: str, action: Literal["logoff", "disconnect"]) -> Response:
    viewer = await _signed_in(request, SCOPE)
    form = await _form(request)
    try:
        sid, user = form.get("session_id") or None, form.get("user") or None
        # One session by its id, else the user's sessions on that station.
        target = Target(host=host, session_id=sid, user=None if sid else user, reason="console")
    except ValueError as exc:
        raise Problem(422, "no such station or session", slug="invalid-request") from exc
    if form.get("confirm") != "yes":
        t = i18n.from_request(request)
        who = form.get("user", "") or target.session_id or ""
        return _confirm(
            request,
            viewer,
            heading=t.gettext(_BUTTON[action]),
            question=t.gettext(_ASK[action]) % {"who": who, "host": host},
            action=f"/ui/stations/{host}/{action}",
            fields=[("session_id", target.session_id or ""), ("user", who)],
            button=t.gettext(_BUTTON[action]),
            back="/ui/stations",
        )
    principal = Principal(name=viewer.name, scopes=viewer.scopes, sites=viewer.sites)
    sites = request.app.state.settings.station_sites
    deps = _deps(request)
    ordered = await _order(sites, action, target, Response(), principal, deps, None)
    await deps.console.audit(viewer, action, f"{host} {target.session_id or ''}")
    return RedirectResponse(f"/ui/requests/{ordered.request_id}", 303)
