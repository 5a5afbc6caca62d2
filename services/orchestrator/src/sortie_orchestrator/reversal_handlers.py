"""Starting a reversal (the API's `:reverse`, SCIM's reactivation) and revealing its
Temporary Access Pass: plain async functions over the store and the vault, like
handlers.py.

The original is claimed first (its `reversed_by` set, its later phases cancelled, in
one compare-and-set), then the reversal is stored with its command: of two callers racing,
one claims it and the other is told it is reversed already.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import JsonValue

from sortie_core.events import Subject, utcnow
from sortie_core.sealed import new_keypair
from sortie_orchestrator import handlers, saga
from sortie_orchestrator.saga import SagaState, Transition, phases, reversal
from sortie_orchestrator.saga.reversal import NotReversible


class NotFound(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Started:
    created: bool
    request_id: uuid.UUID
    # The private half of the pass's key: given once, to the caller, never stored.
    unseal_key: str | None
    # The reversal as this call stored it (None: a replay of an Idempotency-Key).
    state: SagaState | None = None


async def _claim(
    deps: handlers.Deps, original_id: uuid.UUID, rid: uuid.UUID, restore_too: bool
) -> tuple[SagaState, dict[str, dict[str, JsonValue]]]:
    """Mark the original as reversed by `rid`; what it recorded (NotReversible: why not)."""
    found: dict[str, dict[str, JsonValue]] = {}

    def claim(state: SagaState) -> Transition:
        found.clear()
        found.update(reversal.check(state) if restore_too else {})
        if state.reversed_by is not None:
            raise NotReversible(f"already reversed by /v1/requests/{state.reversed_by}")
        state = state.model_copy(deep=True)
        now = utcnow()
        state.reversed_by = rid
        cancelled = phases.cancel(state.phases, now)
        saga.note(state, now, "reversal_requested", f"by {rid}")
        if state.followups:
            # A follow-up sent after the reversal would take away what it gives back.
            saga.note(state, now, "followups_cancelled", ", ".join(sorted(state.followups)))
            state.followups = {}
        if cancelled:
            saga.note(state, now, "phases_cancelled", ", ".join(f"phase {i}" for i in cancelled))
        return Transition(state)

    transition = await deps.store.apply(original_id, claim)
    if transition is None:
        raise NotFound(str(original_id))
    return transition.state, dict(found)


async def reverse(
    deps: handlers.Deps,
    original_id: uuid.UUID,
    *,
    principal: str,
    reason: str,
    issue_tap: bool,
    idempotency_key: str | None,
    fingerprint: str = "",
) -> Started:
    """Reverse a finished offboarding: NotFound, NotReversible, or the reversal started."""
    replay = await deps.index.replayed(idempotency_key, principal, fingerprint)
    if replay is not None:
        return Started(False, replay, None)
    rid = deps.index.new_id()
    original, restore = await _claim(deps, original_id, rid, restore_too=True)
    private, public = new_keypair() if issue_tap else (None, None)
    now = utcnow()
    state = saga.new_reversal(
        rid, original, original.subject, restore, principal, reason, public, now
    )
    transition = saga.start(state, [], now, deps.timeouts)
    created, stored = await handlers.create(
        deps, transition, idempotency_key, principal, fingerprint
    )
    if not created:
        return Started(False, stored, None)
    return Started(True, stored, private, transition.state)


async def _claim_for_reactivation(
    deps: handlers.Deps, last: SagaState, rid: uuid.UUID
) -> tuple[SagaState | None, dict[str, dict[str, JsonValue]]]:
    """The last offboarding and what it recorded; when it recorded nothing it is still
    linked (finished and not reversed yet), and None when it cannot be (e.g. still running)."""
    try:
        return await _claim(deps, last.request_id, rid, restore_too=True)
    except NotReversible:
        if not last.finished or last.status == "cancelled":
            return None, {}
    try:
        state, _ = await _claim(deps, last.request_id, rid, restore_too=False)
    except NotReversible:
        return None, {}
    return state, {}


async def reactivate(
    deps: handlers.Deps,
    subject: Subject,
    last_offboarding: uuid.UUID | None,
    *,
    principal: str,
    idempotency_key: str,
) -> uuid.UUID:
    """A user is active again (SCIM): the reversal of their last offboarding when it
    recorded what it changed; otherwise a reactivation that turns sign-in and the mail
    protocols back on. No Temporary Access Pass: nobody is there to be shown it (the
    helpdesk issues one, or the identity provider sets a password)."""
    replay = await deps.index.replayed(idempotency_key, principal)
    if replay is not None:
        return replay
    loaded = await deps.store.load(last_offboarding) if last_offboarding else None
    rid = deps.index.new_id()
    original: SagaState | None = None
    restore: dict[str, dict[str, JsonValue]] = {}
    if loaded is not None:
        original, restore = await _claim_for_reactivation(deps, loaded.state, rid)
    restore = restore or reversal.reactivation_restore()
    now = utcnow()
    state = saga.new_reversal(
        rid, original, subject, restore, principal, "scim_reactivated", None, now
    )
    transition = saga.start(state, [], now, deps.timeouts)
    _, stored = await handlers.create(deps, transition, idempotency_key, principal, "")
    return stored
