"""What the ENT worker does with each command. No Redis here: each handler gets its
adapters and returns the event to publish (or None when there is nothing to say).

Logging names request ids, step names and hosts only: tickets, TGTs and service URL paths
are credentials or carry them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from sortie_core import services
from sortie_core.errors import PermanentError, RefusedError
from sortie_core.events import (
    DeadLettered,
    Evidence,
    LogoutRequested,
    Observed,
    OffboardRequested,
    Outcome,
    RevocationCompleted,
    ServiceTicket,
    SkipReason,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    StepError,
    StepResult,
    Subject,
    Target,
    utcnow,
)
from sortie_core.steps import Contradicted, RetryPolicy, deadlettered, ended, run_step, skipped

from .adapters import AppLogout, SsoSessions
from .discovery import Found, discover, ticket_ref
from .oidc import LogoutTokenSigner
from .registry import UNREGISTERED, Application, AppProtocol, Registry, url_host
from .slo import SloTickets

log = logging.getLogger(__name__)

SERVICE = services.ENT
SSO_SERVICE = services.SSO
DESTROY_SSO_SESSION = services.SsoAction.DESTROY_SSO_SESSION.value
DESTROY_ALL_SSO_SESSIONS = services.SsoAction.DESTROY_ALL_SSO_SESSIONS.value
APP_LOGOUT = services.EntAction.APP_LOGOUT.value


class StepKind(StrEnum):
    SLO = "slo"  # CAS single logout, one message per service ticket
    IDENTITY = "identity"  # an `http` application's logout endpoint
    OIDC_BCL = "oidc_bcl"  # a signed logout token to the back-channel logout URI
    NO_TICKET = "no_ticket"  # a `cas_slo` application whose tickets could not be learnt
    REFUSED = "refused"  # service URLs outside the registry


@dataclass(frozen=True, slots=True)
class PlannedStep:
    action: str
    kind: StepKind
    app: Application | None = None
    tickets: tuple[ServiceTicket, ...] = ()
    refused_hosts: tuple[str, ...] = ()
    why: str = ""


def plan_apps(
    tickets: Sequence[ServiceTicket],
    registry: Registry,
    *,
    unknown_why: str | None = None,
    wants: Callable[[str], bool] = lambda _: True,
) -> list[PlannedStep]:
    """One step per application: those the tickets reached, every application that logs
    out by identity, and, when discovery failed (`unknown_why`), every other `cas_slo`
    application (reported failed: its session cannot be ended without a ticket); one
    `app_logout:unregistered` step for the tickets whose service URL matches no
    application."""
    tickets_by_app: dict[str, list[ServiceTicket]] = {}
    refused: list[str] = []
    for st in tickets:
        app = registry.match(st.service)
        if app is None:
            refused.append(url_host(st.service))
        elif app.protocol is AppProtocol.CAS_SLO:
            tickets_by_app.setdefault(app.name, []).append(st)
        # A ticket of an identity application: its identity step below covers it.
    steps: list[PlannedStep] = []
    for app in registry.applications:
        if not wants(app.action):
            continue
        if app.name in tickets_by_app:
            steps.append(
                PlannedStep(app.action, StepKind.SLO, app, tuple(tickets_by_app[app.name]))
            )
        elif app.by_identity:
            steps.append(_identity_step(app))
        elif unknown_why is not None:
            steps.append(PlannedStep(app.action, StepKind.NO_TICKET, app, why=unknown_why))
    if refused:
        steps.append(
            PlannedStep(
                f"{APP_LOGOUT}:{UNREGISTERED}",
                StepKind.REFUSED,
                refused_hosts=tuple(dict.fromkeys(refused)),
            )
        )
    return steps


def caller_tickets(event: LogoutRequested) -> tuple[ServiceTicket, ...]:
    return event.sso_session.service_tickets if event.sso_session else ()


def offboard_wants(event: OffboardRequested) -> Callable[[str], bool]:
    return lambda action: event.wants(action) or APP_LOGOUT in event.actions


def _identity_step(app: Application) -> PlannedStep:
    kind = StepKind.IDENTITY if app.protocol is AppProtocol.HTTP else StepKind.OIDC_BCL
    return PlannedStep(app.action, kind, app)


Body = Callable[[], Awaitable[str | None]]


async def bounded_step(
    action: str, body: Body, policy: RetryPolicy, timeout_s: float
) -> StepResult:
    """`run_step` under a time limit covering every attempt and back-off of the step, so a
    slow application cannot hold the report beyond its own timeout."""
    attempts = 0

    async def counted() -> str | None:
        nonlocal attempts
        attempts += 1
        return await body()

    started = utcnow()
    try:
        async with asyncio.timeout(timeout_s):
            return await run_step(SERVICE, action, counted, policy)
    except TimeoutError:
        return ended(
            action,
            Outcome.FAILED,
            attempts=max(1, attempts),
            started_at=started,
            error=StepError(
                code="timeout", message=f"no answer within {timeout_s:g}s", retryable=True
            ),
            observed_by=SERVICE,
        )


def _bcl_body(
    apps: AppLogout,
    app: Application,
    subject: Subject,
    signer: LogoutTokenSigner,
    timeout_s: float,
) -> Body:
    async def body() -> str | None:
        if signer.retired:
            raise PermanentError(
                "the OIDC signing key was retired; restart the worker with a new key",
                code="signing_key_retired",
            )
        # A fresh token (new jti, iat) on every attempt.
        token = signer.sign(app.audience, sub=subject.sso_username)
        await apps.backchannel_logout(app, token, timeout_s=timeout_s)
        return "logout token delivered"

    return body


async def _refuse(hosts: Sequence[str]) -> str | None:
    raise RefusedError(
        "service URL outside the application registry, not called (host: "
        + ", ".join(hosts[:10])
        + (", …" if len(hosts) > 10 else "")
        + ")"
    )


async def _no_ticket(app: Application, why: str) -> str | None:
    raise PermanentError(
        f"no service ticket of the user is known for {app.name} ({why}): its session, "
        "if any, cannot be ended by CAS single logout",
        code="cas_slo_no_ticket",
    )


class Run(NamedTuple):  # what a handler runs its steps with
    apps: AppLogout
    policy: RetryPolicy
    concurrency: int
    default_timeout_s: float
    signer: LogoutTokenSigner | None


async def _execute(step: PlannedStep, subject: Subject, run: Run) -> StepResult:
    apps, policy, _, default_timeout_s, signer = run
    if step.kind is StepKind.REFUSED:
        hosts = step.refused_hosts
        return await run_step(SERVICE, step.action, lambda: _refuse(hosts), policy)
    assert step.app is not None
    app = step.app
    if step.kind is StepKind.NO_TICKET:
        return await run_step(SERVICE, step.action, lambda: _no_ticket(app, step.why), policy)
    timeout_s = app.timeout_s or default_timeout_s
    if step.kind is StepKind.OIDC_BCL:
        if signer is None:
            return skipped(
                step.action,
                "no OIDC signing key configured (SORTIE_ENT_OIDC_SIGNING_KEY_PATH)",
                SkipReason.NOT_CONFIGURED,
            )
        body = _bcl_body(apps, app, subject, signer, timeout_s)
    elif step.kind is StepKind.SLO:
        tickets = SloTickets(apps, app, subject, step.tickets, timeout_s)
        result = await bounded_step(step.action, tickets.body, policy, timeout_s)
        return result.model_copy(update={"items": tickets.items()})
    else:

        async def body() -> str | None:
            await apps.identity_logout(app, subject, timeout_s=timeout_s)
            return None

    return await bounded_step(step.action, body, policy, timeout_s)


async def _run_plan(
    event: LogoutRequested | OffboardRequested,
    found: Found,
    plan: Sequence[PlannedStep],
    run: Run,
) -> RevocationCompleted:
    """Every planned step, `concurrency` of them at a time, reported with what discovery
    found."""
    slots = asyncio.Semaphore(run.concurrency)

    async def one(step: PlannedStep) -> StepResult:
        async with slots:
            return await _execute(step, event.subject, run)

    steps = tuple(await asyncio.gather(*(one(s) for s in plan)))
    what = "logout" if isinstance(event, LogoutRequested) else "offboard"
    log.info("request %s: ent %s %s", event.request_id, what, _summary(steps))
    return RevocationCompleted.answering(event, SERVICE, steps, found.discovery)


def _summary(steps: Sequence[StepResult]) -> str:
    return ", ".join(f"{s.action}={s.outcome.value}" for s in steps) or "no application"


async def handle_logout(
    event: LogoutRequested,
    *,
    registry: Registry,
    apps: AppLogout,
    sso: SsoSessions,
    policy: RetryPolicy,
    concurrency: int = 8,
    default_timeout_s: float = 10.0,
    signer: LogoutTokenSigner | None = None,
) -> RevocationCompleted | None:
    """Discover the session's services in the CAS (the TGT's, or every session of the
    user when the caller gave no TGT), then log every application out."""
    if Target.ENT not in event.targets or not event.addressed_to(SERVICE):
        return None
    tgt = event.sso_session.tgt if event.sso_session else None
    found = await discover(sso, event.subject, registry, tgt=tgt, caller=caller_tickets(event))
    plan = plan_apps(found.tickets, registry, unknown_why=found.error, wants=event.retries)
    run = Run(apps, policy, concurrency, default_timeout_s, signer)
    return await _run_plan(event, found, plan, run)


async def handle_offboard(
    event: OffboardRequested,
    *,
    registry: Registry,
    apps: AppLogout,
    sso: SsoSessions,
    policy: RetryPolicy,
    concurrency: int = 8,
    default_timeout_s: float = 10.0,
    signer: LogoutTokenSigner | None = None,
) -> RevocationCompleted | None:
    """Every SSO session of the user: their services are logged out, and every identity
    application the request asks for."""
    if not event.addressed_to(SERVICE):
        return None
    found = await discover(sso, event.subject, registry)
    wants = offboard_wants(event)
    plan = plan_apps(found.tickets, registry, unknown_why=found.error, wants=wants)
    run = Run(apps, policy, concurrency, default_timeout_s, signer)
    return await _run_plan(event, found, plan, run)


def sso_action(event: SsoLogoutRequested) -> str:
    return DESTROY_SSO_SESSION if event.tgt and not event.all_sessions else DESTROY_ALL_SSO_SESSIONS


async def handle_sso_logout(
    event: SsoLogoutRequested, *, sso: SsoSessions, policy: RetryPolicy
) -> SsoLogoutCompleted:
    """The last step of every request: end the CAS session, then read back through the
    actuator that the CAS no longer knows the TGT (logout) or lists no session of the
    user (offboarding). The CAS's answer to the delete proves nothing (200 for any TGT)."""
    action = sso_action(event)
    tgt = event.tgt if action == DESTROY_SSO_SESSION else None
    username = event.subject.sso_username
    before = await discover(sso, event.subject, Registry(), tgt=tgt)
    remaining: list[int] = []

    async def body() -> str | None:
        if tgt is not None:
            await sso.destroy_ticket(tgt)
            return None
        await sso.destroy_user_sessions(username)
        return "every SSO session of the user"

    async def verify() -> Evidence:
        read_at = utcnow()
        sessions = await sso.user_sessions(username)
        observed: dict[str, Observed] = {"sso_sessions_of_user": len(sessions)}
        if tgt is not None:
            left = sum(1 for s in sessions if s.tgt == tgt)
            observed |= {"tgt": ticket_ref(1, tgt), "tgt_known": bool(left)}
            claim = "the CAS still knows the TGT after deleting it"
        else:
            left = len(sessions)
            claim = f"the CAS still lists {left} SSO session(s) of the user after deleting them"
        remaining[:] = [left]
        evidence = Evidence(
            source=f"{sso.source}: GET ssoSessions/users/{{username}}",
            observed=observed,
            read_at=read_at,
        )
        if left:
            raise Contradicted(claim, evidence)
        return evidence

    step = await run_step(SSO_SERVICE, action, body, policy, verify=verify)
    found = before.discovery.sso_sessions_found
    discovery = before.discovery.model_copy(
        update={
            # The ent report counts applications and tickets; this one counts sessions.
            "applications": (),
            "tickets_found": None,
            "tickets_from_caller": None,
            "sso_sessions_ended": (
                max(0, found - remaining[0]) if found is not None and remaining else None
            ),
        }
    )
    log.info(
        "request %s: sso %s=%s (%s)",
        event.request_id,
        action,
        step.outcome.value,
        step.verification.value if step.verification else "-",
    )
    return SsoLogoutCompleted(
        request_id=event.request_id, subject=event.subject, steps=(step,), discovery=discovery
    )


def handle_deadlettered(
    event: object, record: DeadLettered, registry: Registry
) -> RevocationCompleted | SsoLogoutCompleted | None:
    """A command given up by the broker: its steps are reported failed so the request
    still finishes (and, for the SSO logout, fails visibly). Nothing is discovered: the
    caller's tickets and every application that may hold a session are named."""
    if isinstance(event, SsoLogoutRequested):
        return SsoLogoutCompleted(
            request_id=event.request_id,
            subject=event.subject,
            steps=(deadlettered(sso_action(event), record),),
        )
    given_up = "the command was given up"
    if isinstance(event, LogoutRequested):
        if Target.ENT not in event.targets:
            return None
        plan = plan_apps(caller_tickets(event), registry, unknown_why=given_up)
    elif isinstance(event, OffboardRequested):
        plan = plan_apps((), registry, unknown_why=given_up, wants=offboard_wants(event))
    else:
        return None
    return RevocationCompleted.answering(
        event, SERVICE, [deadlettered(s.action, record) for s in plan]
    )
