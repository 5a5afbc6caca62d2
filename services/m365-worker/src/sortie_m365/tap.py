"""The Temporary Access Pass of a reversal: issued through Graph
(`POST /users/{id}/authentication/temporaryAccessPassMethods`,
https://learn.microsoft.com/graph/api/authentication-post-temporaryaccesspassmethods),
sealed at once to the requester's key (sortie_core.sealed) and reported only sealed
(`StepResult.sealed`). The pass itself is never logged, kept, put in an error or evidence:
it lives in this module's locals between Graph's answer and the sealing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sortie_core import sealed
from sortie_core.errors import PermanentError
from sortie_core.events import Evidence, ReversalRequested, StepResult
from sortie_core.services import ISSUE_TEMPORARY_ACCESS_PASS
from sortie_core.steps import Contradicted, RetryPolicy, run_step

from .adapters import M365User
from .identity import SERVICE
from .leaver_plan import LeaverOps, evidence, graph_of


@dataclass(frozen=True, slots=True)
class TapConfig:
    """Settings TAP_LIFETIME_MINUTES and TAP_USABLE_ONCE."""

    lifetime_minutes: int = 60
    usable_once: bool = False


async def issue_pass(
    ops: LeaverOps,
    user: M365User,
    event: ReversalRequested,
    policy: RetryPolicy,
    config: TapConfig,
) -> StepResult:
    blob: list[str] = []
    issued: dict[str, object] = {}
    key = event.tap_public_key

    async def body() -> str | None:
        if not key:
            raise PermanentError("no key to seal the pass to", code="no_seal_key")
        try:
            sealed.seal(key, "")  # a key that cannot seal refuses before a pass exists
        except ValueError as err:
            raise PermanentError(
                "the key to seal the pass to is invalid", code="bad_seal_key"
            ) from err
        created = await graph_of(ops).issue_temporary_access_pass(
            user.id, config.lifetime_minutes, config.usable_once
        )
        blob[:] = [sealed.seal(key, str(created.pop("temporaryAccessPass")))]
        issued.update(
            id=created.get("id"),
            issued_at=created.get("createdDateTime"),
            lifetime_minutes=created.get("lifetimeInMinutes"),
            usable_once=created.get("isUsableOnce"),
        )
        return (
            f"Temporary Access Pass issued for {issued['lifetime_minutes']} minutes, "
            "sealed for the requester"
        )

    async def verify() -> Evidence:
        listed = await graph_of(ops).temporary_access_passes(user.id)
        present = any(m.get("id") == issued.get("id") for m in listed)
        proof = evidence(
            "graph GET /users/{id}/authentication/temporaryAccessPassMethods",
            issued_at=str(issued.get("issued_at")),
            lifetime_minutes=str(issued.get("lifetime_minutes")),
            usable_once=issued.get("usable_once") is True,
            listed=present,
        )
        if not present:
            raise Contradicted("Graph does not list the pass it issued", proof)
        return proof

    step = await run_step(SERVICE, ISSUE_TEMPORARY_ACCESS_PASS, body, policy, verify=verify)
    return step.model_copy(update={"sealed": blob[0]}) if blob else step
