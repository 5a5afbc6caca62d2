"""Workstations simulator: the session table of many hosts, as `query session` shows it.

A workstation agent in simulation mode reads `GET /hosts/{host}/sessions` instead of
running `query session`, and calls `logoff`, `disconnect` (`tsdiscon`: programs keep
running) or `lock` instead of the Windows, MultiPoint or loginctl commands. Session ids are
per host, like Windows session ids. Every action is logged under `/_sim/events`.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from .common import iso_us, sleep_ms, stamp, utc_now
from .demo import DEMO_HOSTS

HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
State = Literal["active", "disconnected", "locked"]


@dataclass
class WsSession:
    id: int
    user: str
    station: str
    state: str = "active"
    logon_time: datetime = field(default_factory=utc_now)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.user,
            "state": self.state,
            "station": self.station,
            "logon_time": iso_us(self.logon_time),
        }


@dataclass
class Host:
    name: str
    sessions: dict[int, WsSession] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def free_station(self) -> str:
        used = {s.station for s in self.sessions.values()}
        if "console" not in used:
            return "console"
        return next(f"rdp-tcp#{n}" for n in itertools.count(1) if f"rdp-tcp#{n}" not in used)


class WorkstationsSimulator:
    def __init__(self, *, latency_ms: float = 0.0) -> None:
        self.hosts: dict[str, Host] = {}
        self.events: list[dict[str, Any]] = []
        self.latency_ms = latency_ms

    def add_host(self, name: str) -> Host:
        if not HOST_NAME.fullmatch(name):
            raise ValueError(f"invalid host name {name!r}")
        return self.hosts.setdefault(name, Host(name))

    def logon(
        self,
        host: Host,
        user: str,
        station: str | None = None,
        state: str = "active",
        *,
        record: bool = True,
    ) -> WsSession:
        session = WsSession(next(host.ids), user, station or host.free_station(), state)
        host.sessions[session.id] = session
        if record:
            self._event(host, "logon", session)
        return session

    def act(self, host: Host, session_id: int, action: str) -> WsSession | None:
        session = host.sessions.get(session_id)
        if session is None:
            return None
        if action == "logoff":
            del host.sessions[session_id]
        else:
            session.state = {"disconnect": "disconnected", "lock": "locked"}[action]
        self._event(host, action, session)
        return session

    def _event(self, host: Host, action: str, session: WsSession) -> None:
        self.events.append(
            {
                **stamp(),
                "host": host.name,
                "action": action,
                "session_id": session.id,
                "user": session.user,
                "station": session.station,
            }
        )


def load_demo(sim: WorkstationsSimulator) -> None:
    for host, user in DEMO_HOSTS.items():
        sim.logon(sim.add_host(host), user, "console", record=False)


def host_names(count: int) -> list[str]:
    """pc-0001 … pc-N, zero-padded to at least four digits."""
    width = max(4, len(str(count)))
    return [f"pc-{n:0{width}d}" for n in range(1, count + 1)]


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=256)
    station: str | None = Field(default=None, min_length=1, max_length=64)
    state: State = "active"


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0, le=600_000)


class NewHost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=HOST_NAME.pattern)


def create_app(*, seed_demo: bool = False, hosts: int = 0, latency_ms: float = 0.0) -> FastAPI:
    sim = WorkstationsSimulator(latency_ms=latency_ms)
    if seed_demo:
        load_demo(sim)
    for name in host_names(hosts):
        sim.add_host(name)
    app = FastAPI(title="Sortie workstations simulator", docs_url="/_sim/docs")
    app.state.sim = sim

    async def latency() -> None:
        await sleep_ms(sim.latency_ms)

    def host_or_404(name: str) -> Host:
        host = sim.hosts.get(name)
        if host is None:
            raise HTTPException(404, f"unknown host {name!r}")
        return host

    api = [Depends(latency)]

    @app.get("/hosts", dependencies=api)
    async def list_hosts() -> list[str]:
        return sorted(sim.hosts)

    @app.get("/hosts/{host}/sessions", dependencies=api)
    async def list_sessions(host: str) -> list[dict[str, Any]]:
        return [s.view() for s in host_or_404(host).sessions.values()]

    @app.post("/hosts/{host}/sessions", status_code=201, dependencies=api)
    async def create_session(host: str, new: NewSession) -> dict[str, Any]:
        try:
            target = sim.add_host(host)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return sim.logon(target, new.user, new.station, new.state).view()

    def action_route(action: str) -> None:
        async def act(host: str, session_id: int) -> Response:
            if sim.act(host_or_404(host), session_id, action) is None:
                raise HTTPException(404, f"no session {session_id} on {host}")
            return Response(status_code=204)

        app.add_api_route(
            f"/hosts/{{host}}/sessions/{{session_id}}/{action}",
            act,
            methods=["POST"],
            status_code=204,
            dependencies=api,
            name=action,
        )

    for action in ("logoff", "disconnect", "lock"):
        action_route(action)

    # -- simulator admin ------------------------------------------------------------------
    @app.post("/_sim/hosts", status_code=201)
    async def create_host(new: NewHost) -> dict[str, Any]:
        host = sim.add_host(new.name)
        return {"name": host.name, "sessions": len(host.sessions)}

    @app.get("/_sim/sessions")
    async def all_sessions(user: str | None = None) -> list[dict[str, Any]]:
        """Every session of every host (of one user with `?user=`), with its host."""
        return [
            {"host": h.name, **s.view()}
            for h in sim.hosts.values()
            for s in h.sessions.values()
            if user is None or s.user == user
        ]

    @app.get("/_sim/events")
    async def events() -> list[dict[str, Any]]:
        return sim.events

    @app.post("/_sim/config")
    async def set_config(update: ConfigUpdate) -> dict[str, Any]:
        if update.latency_ms is not None:
            sim.latency_ms = update.latency_ms
        return {"latency_ms": sim.latency_ms}

    return app
