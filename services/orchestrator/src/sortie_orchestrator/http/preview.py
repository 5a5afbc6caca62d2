"""`POST /v1/offboardings:preview`: what an offboarding of this subject would find and do,
now, with nothing changed (the M365 identity and the SSO sessions come from the workers'
discovery, adapters/preview_ask.py; the hosts from the presence index)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from sortie_core import services
from sortie_core.events import Discovery, Kind, Subject, Target
from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.bodies import OffboardIn
from sortie_orchestrator.http.depends import get_deps, require_json
from sortie_orchestrator.http.intake import subject_of
from sortie_orchestrator.settings import OrchestratorSettings

router = APIRouter(prefix="/v1")


class WorkerAnswer(BaseModel):
    answered: bool
    discovery: Discovery | None = None


class PreviewHost(BaseModel):
    host: str
    live: bool
    age_s: float | None = None


class PreviewView(BaseModel):
    preview_id: uuid.UUID
    subject: Subject
    effective_at: datetime | None
    changes_nothing: Literal[True] = True
    # Per worker (`m365`, `ent`): what its discovery found, or that it did not answer.
    services: dict[str, WorkerAnswer]
    hosts: list[PreviewHost]
    # Per service, the actions the offboarding would run (SSO last).
    will_do: dict[str, list[str]]
    waited_s: float


def _will_do(
    actions: list[str], ent: Discovery | None, hosts: list[PreviewHost]
) -> dict[str, list[str]]:
    plan = {services.M365: services.expected_actions(Kind.OFFBOARD, services.M365, actions)}
    if not actions or services.EntAction.APP_LOGOUT.value in actions:
        apps = ent.applications if ent is not None else ()
        # No application found (or no answer): the logout of whatever is found then.
        plan[services.ENT] = [services.app_action(a) for a in apps] or [
            services.EntAction.APP_LOGOUT.value
        ]
    for host in hosts:
        name = services.workstation_service(host.host)
        plan[name] = services.expected_actions(Kind.OFFBOARD, name, actions)
    plan[services.SSO] = services.expected_actions(Kind.OFFBOARD, services.SSO, actions)
    return plan


@router.post(
    "/offboardings:preview",
    response_model=PreviewView,
    dependencies=[Depends(require_json)],
    summary="What an offboarding would find and do; nothing is changed",
)
async def preview_offboarding(
    body: OffboardIn,
    principal: Annotated[Principal, Depends(require("offboard:write"))],
    deps: Annotated[handlers.Deps, Depends(get_deps)],
    request: Request,
) -> PreviewView:
    subject = subject_of(body.subject, principal)
    settings = request.app.state.settings
    return await build_preview(deps, settings, subject, list(body.actions or []), body.effective_at)


async def build_preview(
    deps: handlers.Deps,
    settings: OrchestratorSettings,
    subject: Subject,
    actions: list[str],
    effective_at: datetime | None,
) -> PreviewView:
    """What the API and the console show: the workers' discovery and the hosts."""
    started = time.monotonic()
    targets = [Target.M365, Target.ENT, Target.WORKSTATIONS]
    wait_s = settings.preview_wait_s
    preview_id, found = await deps.previews.ask(subject, targets, wait_s)
    present = await deps.presence.hosts_for(subject.workstation_account)
    hosts = [PreviewHost(host=h.host, live=h.live, age_s=h.age_s) for h in present]
    return PreviewView(
        preview_id=preview_id,
        subject=subject,
        effective_at=effective_at,
        services={
            name: WorkerAnswer(answered=d is not None, discovery=d) for name, d in found.items()
        },
        hosts=hosts,
        will_do=_will_do(actions, found.get(services.ENT), hosts),
        waited_s=round(time.monotonic() - started, 3),
    )
