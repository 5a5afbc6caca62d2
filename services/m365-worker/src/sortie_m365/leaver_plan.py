"""How a leaver action is written: a planner per action builds its `Plan` (a body that
records the state before it changes it, and a read-back), registered in `PLANNERS`.

The Graph actions are in leaver.py, the mailbox ones in leaver_mailbox.py; reversal.py and
tap.py use the same adapters (`LeaverOps`) and evidence helpers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sized
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sortie_core.events import Evidence, M365Action, SkipReason, StepResult, utcnow
from sortie_core.steps import Contradicted, StepSkipped, Verify

from .adapters import M365User
from .adapters.exchange_leaver import ExchangeLeaver
from .adapters.graph_leaver import GraphLeaver

Body = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class LeaverOps:
    """The adapters the leaver actions use: None when not configured (skipped)."""

    graph: GraphLeaver | None = None
    exchange: ExchangeLeaver | None = None


async def _nothing() -> str | None:
    return None


async def _no_evidence() -> Evidence:
    return evidence("none")


@dataclass
class Plan:
    # Set by the planner to its own closures (they need the plan's record).
    body: Body = _nothing
    verify: Verify = _no_evidence
    # Filled by `body` on its first attempt: the state before any change.
    record: dict[str, Any] = field(default_factory=dict)

    def set(self, body: Body, verify: Verify) -> Plan:
        self.body, self.verify = body, verify
        return self


Planner = Callable[[LeaverOps, M365User, dict[str, Any]], Plan]
PLANNERS: dict[M365Action, Planner] = {}


def planner(action: M365Action) -> Callable[[Planner], Planner]:
    def register(fn: Planner) -> Planner:
        PLANNERS[action] = fn
        return fn

    return register


def graph_of(ops: LeaverOps) -> GraphLeaver:
    if ops.graph is None:
        raise StepSkipped(
            "the Graph adapter is not configured", SkipReason.DISABLED_BY_CONFIGURATION
        )
    return ops.graph


def exchange_of(ops: LeaverOps) -> ExchangeLeaver:
    if ops.exchange is None:
        raise StepSkipped(
            "Exchange Online (SORTIE_M365_EXCHANGE_URL) is not configured",
            SkipReason.DISABLED_BY_CONFIGURATION,
        )
    return ops.exchange


def evidence(source: str, **observed: Any) -> Evidence:
    return Evidence(source=source, observed=observed, read_at=utcnow())


def none_left(left: Sized, proof: Evidence, claim: str) -> Evidence:
    """A read-back's evidence; Contradicted (`claim`) when it still finds something."""
    if left:
        raise Contradicted(claim, proof)
    return proof


def with_record(step: StepResult, record: dict[str, Any] | None) -> StepResult:
    """`step` carrying `record`; a record too large for the contract says so instead."""
    if not record:
        return step
    data = step.model_dump()
    try:
        return StepResult.model_validate({**data, "recorded": record})
    except ValidationError:
        return StepResult.model_validate({**data, "recorded": {"omitted": "too large"}})
