"""What `GET /v1/requests/{id}` shows of a request's profile phases and of a reversal's
Temporary Access Pass (never the pass itself)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from sortie_orchestrator.saga import SagaState

# The request's status, as phase 0 of its profile.
_PHASE0 = {"in_progress": "running", "sso_logout": "running"}


class PhaseView(BaseModel):
    index: int
    status: str = Field(
        description="`scheduled`, `running`, `completed`, `partial`, `failed` or "
        "`cancelled`. Phase 0 is the request itself (its steps are under `services`)."
    )
    after_seconds: float
    at: datetime | None = Field(description="When it runs (it ran): phase 0's start + after")
    actions: list[str]
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Later phases only: each service's steps, as under the request's `services`.
    services: dict[str, Any] = {}
    healed_at: datetime | None = Field(
        default=None, description="When a phase that ended partial or failed was completed"
    )
    followups: dict[str, Any] = Field(
        default={},
        description="Per service, the next delivery of the steps that failed for a "
        "transient reason: `attempt`, `next_at`, `actions`, `last_error`",
    )


class TapView(BaseModel):
    """A reversal's Temporary Access Pass: whether it was issued and revealed."""

    requested: bool
    issued: bool
    issued_at: datetime | None
    revealed_at: datetime | None


def phases_of(state: SagaState, step_view: Any) -> list[PhaseView]:
    if state.profile is None:
        return []
    first = PhaseView(
        index=0,
        status=_PHASE0.get(state.status, state.status),
        after_seconds=0,
        at=state.started_at or state.effective_at,
        actions=list(state.actions),
        started_at=state.started_at,
        finished_at=state.finished_at,
    )
    later = [
        PhaseView(
            index=p.index,
            status=p.status,
            after_seconds=p.after_s,
            at=p.at,
            actions=p.actions,
            started_at=p.started_at,
            finished_at=p.finished_at,
            services={
                name: {"state": svc.state, "steps": [step_view.of(s) for s in svc.steps]}
                for name, svc in sorted(p.services.items())
            },
            healed_at=p.healed_at,
            followups={name: f.model_dump(mode="json") for name, f in sorted(p.followups.items())},
        )
        for p in state.phases
    ]
    return [first, *later]


def tap_of(state: SagaState) -> TapView | None:
    if state.tap_public_key is None and not state.issue_tap:
        return None
    return TapView(
        requested=state.issue_tap,
        issued=state.tap_issued_at is not None,
        issued_at=state.tap_issued_at,
        revealed_at=state.tap_revealed_at,
    )
