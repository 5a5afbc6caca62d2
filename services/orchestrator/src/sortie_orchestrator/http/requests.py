"""The API's requests: `GET /v1/requests/{id}`, the listing, and `DELETE` (cancel a
scheduled request, or the later phases of an offboarding not started yet)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from sortie_core import services as services_
from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.depends import DepsDep
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.sites import not_found, sees, visible
from sortie_orchestrator.http.views import RequestPage, RequestView, StatusFilter

router = APIRouter(prefix="/v1")
Reader = Annotated[Principal, Depends(require("requests:read"))]


@router.get("/requests/{request_id}", response_model=RequestView)
async def get_request(
    request_id: uuid.UUID,
    principal: Reader,
    deps: DepsDep,
) -> RequestView:
    state = await visible(deps, request_id, principal)
    view = RequestView.of(state)
    m365 = view.services.get(services_.M365)
    if m365 is not None and m365.state == "pending" and deps.m365_queue is not None:
        m365.expected_wait_s = await deps.m365_queue.expected_wait_s()
    return view


@router.get("/requests", response_model=RequestPage)
async def list_requests(
    principal: Reader,
    deps: DepsDep,
    subject: Annotated[str | None, Query(max_length=256)] = None,
    status: StatusFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RequestPage:
    try:
        items, next_cursor = await deps.store.list(
            subject=subject, status=status, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise Problem(400, "invalid cursor", slug="invalid-cursor") from exc
    # A caller limited to sites sees only theirs (a page may then hold fewer items).
    mine = [RequestView.of(s) for s in items if principal.sees_site(s.subject.site)]
    return RequestPage(items=mine, next_cursor=next_cursor)


@router.delete("/requests/{request_id}", response_model=RequestView)
async def cancel_request(
    request_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require("offboard:write"))],
    deps: DepsDep,
) -> RequestView:
    transition, seen = await handlers.try_cancel(deps, request_id, sees(principal, request_id))
    if seen is None:
        raise not_found(request_id)
    if transition is None:
        status = seen.status
        raise Problem(
            409,
            f"only a scheduled request, or the later phases of an offboarding not started "
            f"yet, can be cancelled; this one is {status}",
            slug="not-cancellable",
        )
    return RequestView.of(transition.state)
