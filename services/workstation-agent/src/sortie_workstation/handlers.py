"""What the agent does with each command addressed to its host. No Redis here: each
handler gets the session backend and returns the event to publish.

Every command on `workstation.<host>` gets an answer: the orchestrator sent it because this
agent reported a session of the user, and waits for this host's report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sortie_core import services
from sortie_core.errors import NotFoundError
from sortie_core.events import (
    DeadLettered,
    Evidence,
    LogoutRequested,
    OffboardRequested,
    RevocationCompleted,
    SkipReason,
    StepResult,
    WorkstationCommandRequested,
    utcnow,
)
from sortie_core.steps import Contradicted, RetryPolicy, deadlettered, run_step, skipped

from .adapters import Session, SessionAction, SessionBackend, SessionId, account_name

log = logging.getLogger(__name__)

METRIC_SERVICE = "workstation"
# Sessions already in the state an action would put them in.
_ALREADY = {SessionAction.DISCONNECT: "disconnected", SessionAction.LOCK: "locked"}


def service_name(host: str) -> str:
    # The orchestrator expects exactly this name on the host's results stream.
    return services.workstation_service(host)


def logout_action(policy: str, shared_station: bool) -> SessionAction:
    """The policy's action; a shared station always logs off (a locked or disconnected
    session there keeps a browser that holds the user's SSO cookie)."""
    return SessionAction.LOGOFF if shared_station else SessionAction(policy)


def _ids(ids: list[SessionId]) -> str:
    return ", ".join(str(i) for i in ids)


def _act(
    backend: SessionBackend, action: SessionAction
) -> Callable[[SessionId], Coroutine[Any, Any, None]]:
    if action is SessionAction.LOGOFF:
        return backend.logoff
    if action is SessionAction.DISCONNECT:
        return backend.disconnect
    return backend.lock


@dataclass
class _Ending:
    """One `end_sessions` step: its body and its read-back, and what they saw."""

    action: SessionAction
    host: str
    backend: SessionBackend
    picked: Callable[[Session], bool]
    scope: str
    note: str | None
    done: list[SessionId] = field(default_factory=list)
    already: list[SessionId] = field(default_factory=list)
    gone: list[SessionId] = field(default_factory=list)

    @property
    def source(self) -> str:
        return f"session list of {self.host}"

    async def body(self) -> str | None:
        # Listed again on each attempt: a retry sees what the previous one left.
        listed = await self.backend.list_sessions()
        sessions = [s for s in listed if self.picked(s)]
        if not sessions and not self.done:
            # The host's own session list is authoritative for the host.
            evidence = Evidence(
                source=self.source,
                observed={"sessions_listed": len(listed), "sessions_matching": 0},
                read_at=utcnow(),
            )
            raise NotFoundError(f"no session {self.scope} on {self.host}", evidence=evidence)
        act = _act(self.backend, self.action)
        for session in sessions:
            if session.id in self.done or session.id in self.already:
                continue
            if _ALREADY.get(self.action) == session.state:
                self.already.append(session.id)
                continue
            try:
                await act(session.id)
            except NotFoundError:
                self.gone.append(session.id)
                continue
            self.done.append(session.id)
        if not self.done and not self.already:
            raise NotFoundError(
                f"sessions {_ids(self.gone)} on {self.host} ended before Sortie reached them"
            )
        return self._detail()

    def _detail(self) -> str:
        done, action = self.done, self.action
        parts = []
        if done:
            parts.append(f"{action.value} of session{'s' if len(done) > 1 else ''} {_ids(done)}")
        if self.already:
            parts.append(f"already {_ALREADY[action]}: {_ids(self.already)}")
        if self.gone:
            parts.append(f"gone meanwhile: {_ids(self.gone)}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts)

    async def verify(self) -> Evidence:
        """Listed again: no session logged off remains; a disconnected one is disconnected.
        A lock leaves no trace in `query session` / loginctl's list: its command's exit
        status is the evidence (`acknowledged`)."""
        action = self.action
        listed = await self.backend.list_sessions()
        left = [
            s
            for s in listed
            if self.picked(s)
            and (action is SessionAction.LOGOFF or s.state != _ALREADY[action])
            and s.id not in self.gone
        ]
        evidence = Evidence(
            source=self.source,
            observed={
                "sessions_listed": len(listed),
                "sessions_left": len(left),
                "left_ids": _ids([s.id for s in left])[:200] or None,
            },
            read_at=utcnow(),
        )
        if left:
            raise Contradicted(
                f"still {'open' if action is SessionAction.LOGOFF else 'active'} on {self.host} "
                f"after {action.value}: {_ids([s.id for s in left])}",
                evidence,
            )
        return evidence


async def end_sessions(
    account: str,
    action: SessionAction,
    *,
    host: str,
    backend: SessionBackend,
    policy: RetryPolicy,
    note: str | None = None,
    select: Callable[[Session], bool] | None = None,
    scope: str = "of the user",
) -> StepResult:
    """One step named after `action`, covering every session of `account` on this host
    (or every session `select` picks: an administrator's order)."""
    picked = select or (lambda s: account_name(s.user) == account)
    ending = _Ending(action, host, backend, picked, scope, note)
    return await run_step(
        service_name(host),
        action.value,
        ending.body,
        policy,
        metric_service=METRIC_SERVICE,
        verify=None if action is SessionAction.LOCK else ending.verify,
    )


async def handle_logout(
    event: LogoutRequested,
    *,
    host: str,
    backend: SessionBackend,
    policy: RetryPolicy,
    session_policy: str = "logoff",
    shared_station: bool = False,
) -> RevocationCompleted:
    action = logout_action(session_policy, shared_station)
    note = (
        f"shared station: logoff instead of {session_policy}"
        if action.value != session_policy
        else None
    )
    account = event.subject.workstation_account
    steps: list[StepResult] = []
    if shared_station:
        steps.append(await close_browsers(account, host=host, backend=backend, policy=policy))
    steps.append(
        await end_sessions(account, action, host=host, backend=backend, policy=policy, note=note)
    )
    for step in steps:
        log.info("request %s: %s %s=%s", event.request_id, host, step.action, step.outcome.value)
    return RevocationCompleted.answering(event, service_name(host), steps)


async def close_browsers(
    account: str, *, host: str, backend: SessionBackend, policy: RetryPolicy
) -> StepResult:
    """Step `close_browsers`: the browser of a shared station holds the SSO cookie."""

    async def body() -> str | None:
        return await backend.close_browsers(account)

    return await run_step(
        service_name(host), "close_browsers", body, policy, metric_service=METRIC_SERVICE
    )


async def handle_offboard(
    event: OffboardRequested, *, host: str, backend: SessionBackend, policy: RetryPolicy
) -> RevocationCompleted:
    action = SessionAction.LOGOFF
    if event.wants(action.value):
        step = await end_sessions(
            event.subject.workstation_account, action, host=host, backend=backend, policy=policy
        )
    else:
        step = skipped(
            action.value, "not among the requested actions", SkipReason.ACTION_NOT_SELECTED
        )
    log.info("request %s: %s %s=%s", event.request_id, host, step.action, step.outcome.value)
    return RevocationCompleted.answering(event, service_name(host), (step,))


async def handle_admin(
    event: WorkstationCommandRequested, *, host: str, backend: SessionBackend, policy: RetryPolicy
) -> RevocationCompleted:
    """An administrator's order: one session, one user's sessions, or every session."""
    action = SessionAction(event.action)
    account = event.subject.workstation_account
    select: Callable[[Session], bool] | None = None
    scope = "of the user"
    if event.all_sessions:
        select, scope = (lambda s: True), "open"
    elif event.session_id is not None:
        wanted = event.session_id
        select, scope = (lambda s: str(s.id) == wanted), wanted
    step = await end_sessions(
        account, action, host=host, backend=backend, policy=policy, select=select, scope=scope
    )
    log.info("request %s: %s %s=%s", event.request_id, host, step.action, step.outcome.value)
    return RevocationCompleted.answering(event, service_name(host), (step,))


def handle_deadlettered(
    event: object,
    record: DeadLettered,
    *,
    host: str,
    session_policy: str = "logoff",
    shared_station: bool = False,
) -> RevocationCompleted | None:
    """A command given up by the broker: its step is reported failed so the request finishes."""
    if isinstance(event, LogoutRequested):
        action = logout_action(session_policy, shared_station).value
    elif isinstance(event, OffboardRequested):
        action = SessionAction.LOGOFF.value
    elif isinstance(event, WorkstationCommandRequested):
        action = event.action
    else:
        return None
    return RevocationCompleted.answering(event, service_name(host), (deadlettered(action, record),))
