"""How the ENT worker plans and runs the application logouts of a request: one step per
application (CAS single logout per ticket, OIDC back-channel logout, HTTP endpoint), each
bounded in time and retried by policy; shared by logouts, offboardings and the SSO logout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sortie_core import services
from sortie_core.errors import NotFoundError, PermanentError, RefusedError
from sortie_core.events import (
    Evidence,
    LogoutRequested,
    OffboardRequested,
    Outcome,
    ServiceTicket,
    SkipReason,
    StepError,
    StepResult,
    Subject,
    utcnow,
)
from sortie_core.steps import RetryPolicy, ended, run_step, skipped

from .adapters import AppLogout
from .oidc import LogoutTokenSigner
from .registry import UNREGISTERED, Application, AppProtocol, Registry, url_host
from .slo import SloTickets

SERVICE = services.ENT
APP_LOGOUT = services.EntAction.APP_LOGOUT.value


class StepKind(StrEnum):
    SLO = "slo"  # CAS single logout, one message per service ticket
    IDENTITY = "identity"  # an `http` application's logout endpoint
    OIDC_BCL = "oidc_bcl"  # a signed logout token to the back-channel logout URI
    NO_TICKET = "no_ticket"  # a `cas_slo` application whose tickets could not be learnt
    # A `cas_slo` application asked for again (follow-up, or logged out before the SSO
    # session) whose tickets the CAS, asked this time, does not list: nothing to end.
    NOT_IN_SESSION = "not_in_session"
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
    absent: str | None = None,
) -> list[PlannedStep]:
    """One step per application: those the tickets reached, every application that logs
    out by identity, and, when discovery failed (`unknown_why`), every other `cas_slo`
    application (reported failed: its session cannot be ended without a ticket); with
    `absent` (the CAS was asked, named so), every wanted `cas_slo` application that no
    ticket reached, reported `not_found` from that lookup; one `app_logout:unregistered`
    step for the tickets whose service URL matches no application."""
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
        elif absent is not None and app.protocol is AppProtocol.CAS_SLO:
            steps.append(PlannedStep(app.action, StepKind.NOT_IN_SESSION, app, why=absent))
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


async def _not_in_session(app: Application, source: str) -> str | None:
    raise NotFoundError(
        f"the CAS lists no ticket of the user's sessions for {app.name}: nothing to log out",
        evidence=Evidence(source=source, observed={"tickets": 0}, read_at=utcnow()),
    )


async def _no_ticket(app: Application, why: str) -> str | None:
    raise PermanentError(
        f"no service ticket of the user is known for {app.name} ({why}): its session, "
        "if any, cannot be ended by CAS single logout",
        code=services.CAS_SLO_NO_TICKET,
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
    if step.kind is StepKind.NO_TICKET:
        return await run_step(SERVICE, step.action, lambda: _no_ticket(app, step.why), policy)
    if step.kind is StepKind.NOT_IN_SESSION:
        return await run_step(SERVICE, step.action, lambda: _not_in_session(app, step.why), policy)
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


@dataclass(frozen=True, slots=True)
class AppRunner:
    """How the application logouts of a plan run: the clients, retries and limits."""

    apps: AppLogout
    policy: RetryPolicy
    concurrency: int
    default_timeout_s: float
    signer: LogoutTokenSigner | None = None

    async def run(self, plan: Sequence[PlannedStep], subject: Subject) -> tuple[StepResult, ...]:
        """Every step of `plan`, at most `concurrency` at a time, in the plan's order."""
        slots = asyncio.Semaphore(self.concurrency)

        async def one(step: PlannedStep) -> StepResult:
            async with slots:
                return await _execute(
                    step,
                    subject=subject,
                    apps=self.apps,
                    policy=self.policy,
                    default_timeout_s=self.default_timeout_s,
                    signer=self.signer,
                )

        return tuple(await asyncio.gather(*(one(s) for s in plan)))


def tickets_to_retry(
    plan: Sequence[PlannedStep], steps: Sequence[StepResult]
) -> tuple[ServiceTicket, ...]:
    """The tickets of the single logouts that failed for a reason that can pass: a
    follow-up sends them again (an application answers a second message for an ended
    session with "no session", harmlessly)."""
    return tuple(
        ticket
        for planned, step in zip(plan, steps, strict=True)
        if planned.kind is StepKind.SLO
        and not step.done
        and step.error is not None
        and step.error.retryable
        for ticket in planned.tickets
    )


def summary(steps: Sequence[StepResult]) -> str:
    return ", ".join(f"{s.action}={s.outcome.value}" for s in steps) or "no application"
