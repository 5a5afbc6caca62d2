"""A person's orders on a finished request: `POST /v1/requests/{id}:retry` sends the
failed steps again (saga/retry.py), recording who asked."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from sortie_core.events import Kind, utcnow
from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal, authenticate
from sortie_orchestrator.http.depends import get_deps
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.sites import visible
from sortie_orchestrator.http.views import RequestView
from sortie_orchestrator.saga.retry import retry

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")

# The scope that may start a request of each kind may also retry it.
SCOPE_OF_KIND = {
    Kind.LOGOUT: "logout:write",
    Kind.OFFBOARD: "offboard:write",
    Kind.WORKSTATION_ADMIN: "workstations:admin",
}


@router.post(
    "/requests/{request_id}:retry",
    response_model=RequestView,
    summary="Send the failed steps of a finished (partial or failed) request again, now",
)
async def retry_request(
    request_id: uuid.UUID,
    request: Request,
    deps: Annotated[handlers.Deps, Depends(get_deps)],
) -> RequestView:
    principal: Principal = await authenticate(request)
    if "requests:read" not in principal.scopes:
        raise Problem(404, f"no request {request_id}", slug="not-found")
    state = await visible(deps, request_id, principal)
    scope = SCOPE_OF_KIND[state.kind]
    if scope not in principal.scopes:
        raise Problem(403, f"this token lacks the scope {scope!r}", slug="insufficient-scope")
    transition = await deps.store.apply(
        request_id, lambda s: retry(s, utcnow(), deps.timeouts, principal.name)
    )
    if transition is None:
        current = await deps.store.load(request_id)
        status = current.state.status if current else "unknown"
        raise Problem(
            409,
            f"only a partial or failed request can be retried; this one is {status}",
            slug="not-retryable",
        )
    log.info("request %s: retry of its failed steps asked by %s", request_id, principal.name)
    return RequestView.of(transition.state)
