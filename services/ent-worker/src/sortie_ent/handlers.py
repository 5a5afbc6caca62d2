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

from sortie_core.errors import PermanentError, RefusedError
from sortie_core.events import (
    DeadLettered,
    LogoutRequested,
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
from sortie_core.metrics import REVOCATION_DURATION
from sortie_core.steps import RetryPolicy, deadlettered, run_step, skipped

from .adapters import AppLogout, SsoSessions
from .oidc import LogoutTokenSigner
from .registry import UNREGISTERED, Application, AppProtocol, Registry, url_host
from .slo import logout_request

log = logging.getLogger(__name__)

SERVICE = "ent"
SSO_SERVICE = "sso"
DESTROY_SSO_SESSION = "destroy_sso_session"
DESTROY_ALL_SSO_SESSIONS = "destroy_all_sso_sessions"
APP_LOGOUT = "app_logout"


class StepKind(StrEnum):
    SLO = "slo"  # CAS single logout, one message per service ticket
    IDENTITY = "identity"  # an `http` application's logout endpoint
    OIDC_BCL = "oidc_bcl"  # a signed logout token to the back-channel logout URI
    REFUSED = "refused"  # service URLs outside the registry


@dataclass(frozen=True, slots=True)
class PlannedStep:
    action: str
    kind: StepKind
    app: Application | None = None
    tickets: tuple[ServiceTicket, ...] = ()
    refused_hosts: tuple[str, ...] = ()


def plan_logout(event: LogoutRequested, registry: Registry) -> list[PlannedStep]:
    """One step per application: those named by the session's service tickets, then every
    application that logs out by identity; one `app_logout:unregistered` step for the
    tickets whose service URL matches no application."""
    tickets_by_app: dict[str, list[ServiceTicket]] = {}
    refused: list[str] = []
    for st in event.sso_session.service_tickets if event.sso_session else ():
        app = registry.match(st.service)
        if app is None:
            refused.append(url_host(st.service))
        elif app.protocol is AppProtocol.CAS_SLO:
            tickets_by_app.setdefault(app.name, []).append(st)
        # A ticket of an identity application: its identity step below covers it.
    steps: list[PlannedStep] = []
    for app in registry.applications:
        if app.name in tickets_by_app:
            steps.append(
                PlannedStep(app.action, StepKind.SLO, app, tuple(tickets_by_app[app.name]))
            )
        elif app.by_identity:
            steps.append(_identity_step(app))
    if refused:
        steps.append(
            PlannedStep(
                f"{APP_LOGOUT}:{UNREGISTERED}",
                StepKind.REFUSED,
                refused_hosts=tuple(dict.fromkeys(refused)),
            )
        )
    return steps


def plan_offboard(event: OffboardRequested, registry: Registry) -> list[PlannedStep]:
    """No session is known: every identity application the request asks for."""
    return [
        _identity_step(app)
        for app in registry.identity_apps
        if event.wants(app.action) or APP_LOGOUT in event.actions
    ]


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
        finished = utcnow()
        result = StepResult(
            action=action,
            outcome=Outcome.FAILED,
            attempts=max(1, attempts),
            started_at=started,
            finished_at=finished,
            error=StepError(
                code="timeout", message=f"no answer within {timeout_s:g}s", retryable=True
            ),
        )
        REVOCATION_DURATION.labels(SERVICE, action, Outcome.FAILED.value).observe(
            result.duration_seconds
        )
        return result


def _slo_body(
    apps: AppLogout,
    app: Application,
    subject: Subject,
    tickets: Sequence[ServiceTicket],
    timeout_s: float,
) -> Body:
    pending = list(tickets)

    async def body() -> str | None:
        # A retry sends only the messages not delivered yet.
        while pending:
            st = pending[0]
            message = logout_request(subject.sso_username, st.ticket)
            await apps.single_logout(app, st.service, message, timeout_s=timeout_s)
            pending.pop(0)
        count = len(tickets)
        return f"single logout delivered for {count} service ticket{'s' if count > 1 else ''}"

    return body


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


async def _execute(
    step: PlannedStep,
    *,
    subject: Subject,
    apps: AppLogout,
    policy: RetryPolicy,
    default_timeout_s: float,
    signer: LogoutTokenSigner | None = None,
) -> StepResult:
    if step.kind is StepKind.REFUSED:
        hosts = step.refused_hosts
        return await run_step(SERVICE, step.action, lambda: _refuse(hosts), policy)
    assert step.app is not None
    app = step.app
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
        body = _slo_body(apps, app, subject, step.tickets, timeout_s)
    else:

        async def body() -> str | None:
            await apps.identity_logout(app, subject, timeout_s=timeout_s)
            return None

    return await bounded_step(step.action, body, policy, timeout_s)


async def _run_plan(
    plan: Sequence[PlannedStep],
    *,
    subject: Subject,
    apps: AppLogout,
    policy: RetryPolicy,
    concurrency: int,
    default_timeout_s: float,
    signer: LogoutTokenSigner | None = None,
) -> tuple[StepResult, ...]:
    slots = asyncio.Semaphore(concurrency)

    async def one(step: PlannedStep) -> StepResult:
        async with slots:
            return await _execute(
                step,
                subject=subject,
                apps=apps,
                policy=policy,
                default_timeout_s=default_timeout_s,
                signer=signer,
            )

    return tuple(await asyncio.gather(*(one(s) for s in plan)))


def _summary(steps: Sequence[StepResult]) -> str:
    return ", ".join(f"{s.action}={s.outcome.value}" for s in steps) or "no application"


async def handle_logout(
    event: LogoutRequested,
    *,
    registry: Registry,
    apps: AppLogout,
    policy: RetryPolicy,
    concurrency: int = 8,
    default_timeout_s: float = 10.0,
    signer: LogoutTokenSigner | None = None,
) -> RevocationCompleted | None:
    if Target.ENT not in event.targets:
        return None
    steps = await _run_plan(
        plan_logout(event, registry),
        subject=event.subject,
        apps=apps,
        policy=policy,
        concurrency=concurrency,
        default_timeout_s=default_timeout_s,
        signer=signer,
    )
    log.info("request %s: ent logout %s", event.request_id, _summary(steps))
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=steps
    )


async def handle_offboard(
    event: OffboardRequested,
    *,
    registry: Registry,
    apps: AppLogout,
    policy: RetryPolicy,
    concurrency: int = 8,
    default_timeout_s: float = 10.0,
    signer: LogoutTokenSigner | None = None,
) -> RevocationCompleted:
    steps = await _run_plan(
        plan_offboard(event, registry),
        subject=event.subject,
        apps=apps,
        policy=policy,
        concurrency=concurrency,
        default_timeout_s=default_timeout_s,
        signer=signer,
    )
    log.info("request %s: ent offboard %s", event.request_id, _summary(steps))
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=steps
    )


def sso_action(event: SsoLogoutRequested) -> str:
    return DESTROY_SSO_SESSION if event.tgt and not event.all_sessions else DESTROY_ALL_SSO_SESSIONS


async def handle_sso_logout(
    event: SsoLogoutRequested, *, sso: SsoSessions, policy: RetryPolicy
) -> SsoLogoutCompleted:
    """The last step of every request: end the CAS session (404 on a TGT: already gone)."""
    action = sso_action(event)
    tgt = event.tgt
    username = event.subject.sso_username

    async def body() -> str | None:
        if action == DESTROY_SSO_SESSION:
            assert tgt is not None
            await sso.destroy_ticket(tgt)
            return None
        await sso.destroy_user_sessions(username)
        return "every SSO session of the user"

    step = await run_step(SSO_SERVICE, action, body, policy)
    log.info("request %s: sso %s=%s", event.request_id, action, step.outcome.value)
    return SsoLogoutCompleted(request_id=event.request_id, subject=event.subject, steps=(step,))


def handle_deadlettered(
    event: object, record: DeadLettered, registry: Registry
) -> RevocationCompleted | SsoLogoutCompleted | None:
    """A command given up by the broker: its steps are reported failed so the request
    still finishes (and, for the SSO logout, fails visibly)."""
    if isinstance(event, SsoLogoutRequested):
        return SsoLogoutCompleted(
            request_id=event.request_id,
            subject=event.subject,
            steps=(deadlettered(sso_action(event), record),),
        )
    if isinstance(event, LogoutRequested):
        if Target.ENT not in event.targets:
            return None
        plan = plan_logout(event, registry)
    elif isinstance(event, OffboardRequested):
        plan = plan_offboard(event, registry)
    else:
        return None
    return RevocationCompleted(
        service=SERVICE,
        request_id=event.request_id,
        subject=event.subject,
        steps=tuple(deadlettered(s.action, record) for s in plan),
    )
