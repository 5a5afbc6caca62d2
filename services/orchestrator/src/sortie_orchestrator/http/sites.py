"""Delegated administration in the API: a caller limited to sites (a token's `sites`)
sees only the requests of those sites; any other is a 404, as if it did not exist."""

from __future__ import annotations

import uuid

from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.saga import SagaState


async def visible(deps: handlers.Deps, request_id: uuid.UUID, principal: Principal) -> SagaState:
    """The request, if it exists and is of the caller's sites (else a 404, as if not)."""
    loaded = await deps.store.load(request_id)
    if loaded is None or not principal.sees_site(loaded.state.subject.site):
        raise Problem(404, f"no request {request_id}", slug="not-found")
    return loaded.state
