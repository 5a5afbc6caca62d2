"""`GET /v1/requests:export`: the requests of a period, filtered by status (and site), as
CSV (one row per step: outcome, proof, evidence, who asked) or JSON (the request views,
as `GET /v1/requests/{id}` shows them), streamed as they are read."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from sortie_orchestrator import handlers
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.depends import get_deps
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.views import RequestView, StatusFilter
from sortie_orchestrator.saga import SagaState, all_services, proof_of

router = APIRouter(prefix="/v1")

MAX_PERIOD = timedelta(days=31)
COLUMNS = (
    "request_id", "kind", "status", "user_id", "upn", "site", "requested_by", "reason",
    "created_at", "started_at", "finished_at", "service", "action", "outcome", "proof",
    "verification", "attempts", "error_code", "error_message", "evidence",
)  # fmt: skip


def _iso(dt: datetime | None) -> str:
    return dt.isoformat() if dt else ""


def csv_rows(state: SagaState) -> Iterable[list[str]]:
    """One row per step; a request without any step (scheduled, cancelled) gets one row."""
    head = [
        str(state.request_id), state.kind.value, state.status, state.subject.user_id,
        state.subject.upn or "", state.subject.site or "", state.requested_by or "",
        state.reason,
        _iso(state.created_at), _iso(state.started_at), _iso(state.finished_at),
    ]  # fmt: skip
    steps = [(name, step) for name, svc in all_services(state).items() for step in svc.steps]
    if not steps:
        yield [*head, *[""] * (len(COLUMNS) - len(head))]
    for name, step in steps:
        yield [
            *head,
            name,
            step.action,
            step.outcome.value,
            proof_of(step),
            step.verification.value if step.verification else "",
            str(step.attempts),
            step.error.code if step.error else "",
            step.error.message if step.error else "",
            step.evidence.model_dump_json() if step.evidence else "",
        ]


def _line(row: Iterable[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(row)
    return out.getvalue()


async def _csv(states: AsyncIterator[SagaState]) -> AsyncIterator[str]:
    yield _line(COLUMNS)
    async for state in states:
        yield "".join(_line(row) for row in csv_rows(state))


async def _json(states: AsyncIterator[SagaState]) -> AsyncIterator[str]:
    yield "["
    first = True
    async for state in states:
        yield ("" if first else ",") + RequestView.of(state).model_dump_json()
        first = False
    yield "]"


async def _filtered(
    states: AsyncIterator[SagaState], status: str | None, site: str | None, who: Principal
) -> AsyncIterator[SagaState]:
    async for state in states:
        if status is not None and state.status != status:
            continue
        if site is not None and state.subject.site != site:
            continue
        if who.sees_site(state.subject.site):
            yield state


@router.get(
    "/requests:export",
    summary="The requests of a period (at most 31 days), as CSV or JSON, streamed",
    response_class=StreamingResponse,
)
async def export_requests(
    principal: Annotated[Principal, Depends(require("requests:read"))],
    deps: Annotated[handlers.Deps, Depends(get_deps)],
    since: Annotated[datetime, Query(description="from (inclusive), ISO 8601 with a zone")],
    until: Annotated[datetime | None, Query(description="to (exclusive); default now")] = None,
    status: StatusFilter | None = None,
    site: Annotated[str | None, Query(max_length=100)] = None,
    format: Literal["csv", "json"] = "csv",
) -> StreamingResponse:
    end = until or datetime.now(UTC)
    if since.tzinfo is None or end.tzinfo is None:
        raise Problem(422, "since and until need a time zone", slug="invalid-request")
    if not since < end or end - since > MAX_PERIOD:
        raise Problem(
            422, "the period must be positive and at most 31 days", slug="invalid-request"
        )
    return stream(deps, principal, since, end, status, site, format)


def stream(
    deps: handlers.Deps,
    principal: Principal,
    since: datetime,
    end: datetime,
    status: str | None,
    site: str | None,
    format: Literal["csv", "json"],
) -> StreamingResponse:
    """The export as a download (the API's and the console's)."""
    states = _filtered(deps.index.between(since, end), status, site, principal)
    name = f"sortie-requests-{since.date().isoformat()}.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if format == "json":
        return StreamingResponse(_json(states), media_type="application/json", headers=headers)
    return StreamingResponse(_csv(states), media_type="text/csv; charset=utf-8", headers=headers)
