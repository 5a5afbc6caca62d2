"""Delegated administration in the API: a caller limited to sites (a token's `sites`)
sees only the requests of those sites; any other is a 404, as if it did not exist."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.saga import SagaState


def not_found(request_id: uuid.UUID) -> Problem:
    return Problem(404, f"no request {request_id}", slug="not-found")


def sees(principal: Principal, request_id: uuid.UUID) -> Callable[[SagaState], bool]:
    """A check of a loaded request: True, or the 404 of one not of the caller's sites."""

    def check(state: SagaState) -> bool:
        if not principal.sees_site(state.subject.site):
            raise not_found(request_id)
        return True

    return check


async def visible(deps: handlers.Deps, request_id: uuid.UUID, principal: Principal) -> SagaState:
    """The request, if it exists and is of the caller's sites (else a 404, as if not)."""
    loaded = await deps.store.load(request_id)
    if loaded is None or not principal.sees_site(loaded.state.subject.site):
        raise not_found(request_id)
    return loaded.state
