"""The ENT apps simulator's admin API under `/_sim` (no auth): apps, sessions, messages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .entapps import App, EntAppsSimulator


class NewApp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    protocol: Literal["cas_slo", "oidc_bcl", "http"]


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1, max_length=256)
    # The service ticket (cas_slo; one is made up when absent) or any key of the session.
    ticket: str | None = Field(default=None, min_length=1, max_length=512)
    sid: str | None = Field(default=None, min_length=1, max_length=512)


class ConfigUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0, le=600_000)
    # Replaces the set of failing apps.
    fail_apps: list[str] | None = None


def add_admin_routes(api: FastAPI, sim: EntAppsSimulator) -> None:
    def app_or_404(name: str) -> App:
        app = sim.apps.get(name)
        if app is None:
            raise HTTPException(404, f"no app {name!r}")
        return app

    def app_view(app: App) -> dict[str, Any]:
        return {
            "name": app.name,
            "protocol": app.protocol,
            "down": app.name in sim.fail_apps,
            "sessions": len(app.sessions),
        }

    @api.get("/_sim/apps")
    async def list_apps() -> list[dict[str, Any]]:
        return [app_view(app) for app in sim.apps.values()]

    @api.post("/_sim/apps", status_code=201)
    async def create_app(new: NewApp) -> dict[str, Any]:
        if new.name in sim.apps:
            raise HTTPException(409, f"app {new.name!r} exists")
        try:
            return app_view(sim.add_app(new.name, new.protocol))
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc

    @api.get("/_sim/apps/{name}/sessions")
    async def list_sessions(name: str) -> list[dict[str, Any]]:
        return [s.view() for s in app_or_404(name).sessions]

    @api.post("/_sim/apps/{name}/sessions", status_code=201)
    async def create_session(name: str, new: NewSession) -> dict[str, Any]:
        try:
            return sim.add_session(app_or_404(name), new.user, new.ticket, new.sid).view()
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from exc

    @api.get("/_sim/received")
    async def received() -> list[dict[str, Any]]:
        return sim.received

    @api.get("/_sim/config")
    async def get_config() -> dict[str, Any]:
        return {"latency_ms": sim.latency_ms, "fail_apps": sorted(sim.fail_apps)}

    @api.post("/_sim/config")
    async def set_config(update: ConfigUpdate) -> dict[str, Any]:
        if update.latency_ms is not None:
            sim.latency_ms = update.latency_ms
        if update.fail_apps is not None:
            sim.fail_apps = set(update.fail_apps)
        return {"latency_ms": sim.latency_ms, "fail_apps": sorted(sim.fail_apps)}
