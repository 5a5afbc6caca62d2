"""`POST /v1/requests/{id}:reverse` and `POST /v1/requests/{id}/temporary-access-pass:reveal`.

A reversal restores what a finished offboarding recorded (saga/reversal.py). Its answer
carries, once, the key that opens the user's Temporary Access Pass: the orchestrator keeps
only the pass sealed to that key (adapters/tap_vault.py), and reveals it once, to the
principal who asked for the reversal.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from sortie_core.events import utcnow
from sortie_orchestrator import reversal_handlers, saga
from sortie_orchestrator.adapters.tap_vault import Gone
from sortie_orchestrator.handlers import Deps
from sortie_orchestrator.http.auth import Principal, require
from sortie_orchestrator.http.bodies import NO_CTRL, Strict, Visible, fingerprint
from sortie_orchestrator.http.depends import OrderDep, accepts, get_deps, require_json
from sortie_orchestrator.http.intake import mark_accepted
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.http.views import Links
from sortie_orchestrator.saga import SagaState, Transition
from sortie_orchestrator.saga.reversal import NotReversible

router = APIRouter(prefix="/v1")


class ReverseIn(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=200, pattern=NO_CTRL), Visible] = (
        "reversal"
    )
    issue_temporary_access_pass: bool = True


class TapKey(BaseModel):
    unseal_key: str = Field(
        description="Base64url X25519 private key: opens the pass, once. Sortie kept no copy."
    )
    reveal: str


class ReversalAccepted(BaseModel):
    request_id: uuid.UUID
    status: str
    links: Links
    reverses: uuid.UUID
    temporary_access_pass: TapKey | None = Field(
        default=None,
        description="In the first answer only (not in an idempotent replay), when a pass "
        "was asked for.",
    )


class RevealIn(Strict):
    unseal_key: Annotated[str, Field(min_length=40, max_length=64, pattern=r"^[A-Za-z0-9_\-]+$")]


class Revealed(BaseModel):
    temporary_access_pass: str


def reveal_path(rid: uuid.UUID) -> str:
    return f"/v1/requests/{rid}/temporary-access-pass:reveal"


@accepts(
    router,
    "/requests/{request_id}:reverse",
    ReversalAccepted,
    "Undo a finished offboarding: restore what it recorded, issue a Temporary "
    "Access Pass (never the old password)",
)
async def reverse(
    request_id: uuid.UUID,
    body: ReverseIn,
    principal: Annotated[Principal, Depends(require("offboard:write"))],
    order: OrderDep,
) -> ReversalAccepted:
    deps, response = order.deps, order.response
    try:
        started = await reversal_handlers.reverse(
            deps,
            request_id,
            principal=principal.name,
            reason=body.reason,
            issue_tap=body.issue_temporary_access_pass,
            idempotency_key=order.idempotency_key,
            fingerprint=fingerprint(f"reverse:{request_id}", body),
        )
    except reversal_handlers.NotFound as exc:
        raise Problem(404, f"no request {request_id}", slug="not-found") from exc
    except NotReversible as exc:
        raise Problem(409, str(exc), slug="not-reversible") from exc
    state = started.state
    if state is None:
        # A replay: the first reversal's own status.
        loaded = await deps.store.load(started.request_id)
        state = loaded.state if loaded else None
    links = mark_accepted(response, started.request_id, started.created)
    tap = None
    if started.unseal_key is not None:
        tap = TapKey(unseal_key=started.unseal_key, reveal=reveal_path(started.request_id))
    response.headers["Cache-Control"] = "no-store"
    return ReversalAccepted(
        request_id=started.request_id,
        status=state.status if state else "accepted",
        links=links,
        reverses=(state.reverses if state else None) or request_id,
        temporary_access_pass=tap,
    )


@router.post(
    "/requests/{request_id}/temporary-access-pass:reveal",
    response_model=Revealed,
    dependencies=[Depends(require_json)],
    summary="The reversal's Temporary Access Pass, once, to whoever asked for the reversal",
    responses={410: {"description": "revealed already, or expired"}},
)
async def reveal(
    request_id: uuid.UUID,
    body: RevealIn,
    response: Response,
    principal: Annotated[Principal, Depends(require("offboard:write"))],
    deps: Annotated[Deps, Depends(get_deps)],
) -> Revealed:
    loaded = await deps.store.load(request_id)
    if loaded is None or not loaded.state.issue_tap:
        raise Problem(404, f"no reversal with a Temporary Access Pass {request_id}")
    state = loaded.state
    if state.requested_by != principal.name:
        raise Problem(403, "only the principal who asked for the reversal may see its pass")
    if state.tap_revealed_at is not None:
        raise Problem(410, "the Temporary Access Pass was revealed already", slug="gone")
    if state.tap_issued_at is None:
        raise Problem(409, "the Temporary Access Pass is not issued yet", slug="not-ready")
    assert deps.vault is not None
    try:
        secret = await deps.vault.reveal(request_id, body.unseal_key)
    except Gone as exc:
        raise Problem(
            410, "the Temporary Access Pass expired or was revealed", slug="gone"
        ) from exc
    except ValueError as exc:
        raise Problem(422, "this key does not open the pass", slug="wrong-key") from exc

    def revealed(s: SagaState) -> Transition:
        s = s.model_copy(deep=True)
        s.tap_revealed_at = utcnow()
        saga.note(s, s.tap_revealed_at, "temporary_access_pass_revealed", principal.name)
        return Transition(s)

    await deps.store.apply(request_id, revealed)
    response.headers["Cache-Control"] = "no-store"
    return Revealed(temporary_access_pass=secret)
