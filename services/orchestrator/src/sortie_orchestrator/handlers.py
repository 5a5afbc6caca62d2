"""The orchestrator's handlers: intake, worker reports, deadlines. Plain async functions
over the store and the presence index; `app.py` wires them to HTTP and the streams."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sortie_core.broker import Delivery
from sortie_core.events import (
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoSession,
    StepResult,
    Subject,
    Target,
    utcnow,
)
from sortie_core.metrics import REQUEST_DURATION, REQUESTS_TOTAL
from sortie_orchestrator import saga
from sortie_orchestrator.adapters.console_store import ConsoleStore
from sortie_orchestrator.adapters.logout_keys import LogoutKeys
from sortie_orchestrator.adapters.m365_queue import M365Queue
from sortie_orchestrator.adapters.presence import PresenceIndex
from sortie_orchestrator.adapters.preview_ask import WorkerPreviews
from sortie_orchestrator.adapters.saga_index import SagaIndex
from sortie_orchestrator.adapters.saga_store import SagaStore
from sortie_orchestrator.adapters.scim_store import ScimStores
from sortie_orchestrator.adapters.tap_vault import TapVault
from sortie_orchestrator.profiles import Profile
from sortie_orchestrator.saga import SagaState, Timeouts, Transition

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Deps:
    """The adapters handlers and routes are handed (bootstrap.make_deps builds them)."""

    store: SagaStore
    presence: PresenceIndex
    timeouts: Timeouts
    index: SagaIndex
    previews: WorkerPreviews
    scim: ScimStores
    logout_keys: LogoutKeys
    console: ConsoleStore
    # Sealed Temporary Access Passes of reversals, kept at most this long (the pass's
    # lifetime, Entra's default: 60 minutes).
    vault: TapVault | None = None
    tap_ttl_s: int = 3600
    m365_queue: M365Queue | None = None


def _observe(transition: Transition | None) -> None:
    """Metrics for a committed transition (only the replica that committed it gets here)."""
    if transition is None:
        return
    state = transition.state
    if transition.refinished:
        # Counted once already when it first finished: only say what changed.
        log.info("request %s (%s) is now %s", state.request_id, state.kind.value, state.status)
        return
    if not transition.finished_now:
        return
    REQUESTS_TOTAL.labels(state.kind.value, state.status).inc()
    if state.status != "cancelled":
        REQUEST_DURATION.labels(state.kind.value, state.status).observe(
            state.duration_seconds() or 0.0
        )
    log.info(
        "request %s (%s) finished %s in %.3fs",
        state.request_id,
        state.kind.value,
        state.status,
        state.duration_seconds() or 0.0,
    )


async def _hosts(deps: Deps, state: SagaState) -> list[saga.HostPresence]:
    if Target.WORKSTATIONS not in state.targets:
        return []
    return await deps.presence.hosts_for(state.subject.workstation_account)


async def create(
    deps: Deps,
    transition: Transition,
    idempotency_key: str | None,
    principal: str,
    fingerprint: str,
    progress: tuple[str, int] | None = None,
) -> tuple[bool, uuid.UUID]:
    """Store a new request and its first messages; count it once, however often it
    is submitted with the same Idempotency-Key (and body: `fingerprint`)."""
    created, rid = await deps.store.create(
        transition, idempotency_key, principal, fingerprint, progress
    )
    if created:
        REQUESTS_TOTAL.labels(transition.state.kind.value, "accepted").inc()
        _observe(transition)
    return created, rid


async def accept_logout(
    deps: Deps,
    *,
    subject: Subject,
    reason: str,
    targets: list[Target],
    sso_session: SsoSession | None,
    idempotency_key: str | None,
    principal: str,
    fingerprint: str = "",
    progress: tuple[str, int] | None = None,
) -> tuple[bool, uuid.UUID]:
    """`progress`: the key and time to live of the request's progress link, written by
    the same script (the intake then costs two round trips: presence, create)."""
    now = utcnow()
    state = saga.new_logout(deps.index.new_id(), subject, reason, targets, sso_session, now)
    state.requested_by = principal  # who asked, for the record (the ENT's token name)
    transition = saga.start(state, await _hosts(deps, state), now, deps.timeouts)
    return await create(deps, transition, idempotency_key, principal, fingerprint, progress)


@dataclass(frozen=True, slots=True)
class Intake:
    created: bool
    request_id: uuid.UUID
    # The request as this call stored it (None: a replay of an Idempotency-Key).
    state: SagaState | None


async def offboard(
    deps: Deps,
    *,
    subject: Subject,
    reason: str,
    requested_by: str,
    actions: list[str],
    effective_at: datetime | None,
    idempotency_key: str | None,
    principal: str,
    fingerprint: str = "",
    profile: tuple[str, Profile] | None = None,
) -> Intake:
    now = utcnow()
    state = saga.new_offboard(
        deps.index.new_id(), subject, reason, requested_by, actions, effective_at, now, profile
    )
    transition = Transition(state)
    if state.status == "in_progress":
        transition = saga.start(state, await _hosts(deps, state), now, deps.timeouts)
    created, rid = await create(deps, transition, idempotency_key, principal, fingerprint)
    return Intake(created, rid, transition.state if created else None)


async def accept_offboard(deps: Deps, **order: Any) -> tuple[bool, uuid.UUID]:
    """`offboard`, for who needs only (created, request id)."""
    intake = await offboard(deps, **order)
    return intake.created, intake.request_id


async def accept_admin(
    deps: Deps,
    *,
    subject: Subject,
    reason: str,
    requested_by: str,
    order: saga.AdminOrder,
    hosts: list[saga.HostPresence],
    idempotency_key: str | None,
    principal: str,
    fingerprint: str = "",
) -> tuple[bool, uuid.UUID]:
    """An administrator's order on workstation sessions: a request like any other, sent
    to `hosts` (a lapsed one is reported `unreachable` at once), without an SSO phase."""
    now = utcnow()
    state = saga.new_admin(deps.index.new_id(), subject, reason, requested_by, order, now)
    transition = saga.start(state, hosts, now, deps.timeouts)
    return await create(deps, transition, idempotency_key, principal, fingerprint)


async def on_revocation(
    deps: Deps, event: RevocationCompleted, delivery: Delivery | None = None
) -> None:
    """`delivery`: the report's stream entry, acknowledged by the commit; a report for
    an unknown request raises RefusedError. A sealed Temporary Access Pass goes to the
    vault, never into the request's state."""
    event = await _keep_sealed(deps, event)
    transition = await deps.store.apply(
        event.request_id,
        lambda s: saga.on_revocation(s, event, utcnow(), deps.timeouts),
        ack=delivery,
    )
    _observe(transition)


async def _keep_sealed(deps: Deps, event: RevocationCompleted) -> RevocationCompleted:
    if not any(s.sealed for s in event.steps):
        return event
    for step in event.steps:
        if step.sealed and deps.vault is not None:
            await deps.vault.keep(event.request_id, step.sealed, _tap_ttl(deps, step))
    steps = tuple(s.model_copy(update={"sealed": None}) for s in event.steps)
    return event.model_copy(update={"steps": steps})


def _tap_ttl(deps: Deps, step: StepResult) -> int:
    """No longer than the pass lives (its lifetime, read back by the worker)."""
    observed = step.evidence.observed if step.evidence else {}
    try:
        lifetime_s = int(float(str(observed.get("lifetime_minutes"))) * 60)
    except (ValueError, OverflowError):
        return deps.tap_ttl_s
    return max(1, min(deps.tap_ttl_s, lifetime_s))


async def on_sso_completed(
    deps: Deps, event: SsoLogoutCompleted, delivery: Delivery | None = None
) -> None:
    transition = await deps.store.apply(
        event.request_id,
        lambda s: saga.on_sso_completed(s, event, utcnow(), deps.timeouts),
        ack=delivery,
    )
    _observe(transition)


async def fire_deadline(deps: Deps, request_id: str) -> None:
    """A deadline fell due: start a scheduled request, or time out a phase."""
    now = utcnow()
    seen: list[SagaState] = []

    def due(state: SagaState) -> Transition | None:
        seen[:] = [state]
        if state.status == "scheduled":
            return None  # its start needs the hosts first (I/O)
        return saga.on_deadline(state, utcnow(), deps.timeouts)

    transition = await deps.store.apply(request_id, due)
    if transition is None and seen and seen[-1].status == "scheduled":
        hosts = await _hosts(deps, seen[-1])

        def begin(state: SagaState) -> Transition | None:
            if state.status != "scheduled" or (state.effective_at and state.effective_at > now):
                return None
            return saga.start(state, hosts, utcnow(), deps.timeouts)

        transition = await deps.store.apply(request_id, begin)
    elif transition is None and (not seen or seen[-1].next_deadline() is None):
        # Gone (expired), or nothing due any more (e.g. finished meanwhile): keep the
        # index clean.
        await deps.index.forget_deadline(request_id)
    _observe(transition)


async def cancel(deps: Deps, request_id: uuid.UUID) -> Transition | None:
    transition, _ = await try_cancel(deps, request_id)
    return transition


async def try_cancel(
    deps: Deps, request_id: uuid.UUID, only: Callable[[SagaState], bool] | None = None
) -> tuple[Transition | None, SagaState | None]:
    """The cancel's transition (None: nothing to cancel, or `only` said no), and the state
    it was judged on (None: no such request): one read, whatever the answer."""
    seen: list[SagaState] = []

    def cancelled(state: SagaState) -> Transition | None:
        seen[:] = [state]
        if only is not None and not only(state):
            return None
        return saga.cancel(state, utcnow())

    transition = await deps.store.apply(request_id, cancelled)
    _observe(transition)
    return transition, (seen[-1] if seen else None)
