"""What the ENT worker does with each command. No Redis here: each handler gets its
adapters and returns the event to publish (or None when there is nothing to say).

Logging names request ids, step names and hosts only: tickets, TGTs and service URL paths
are credentials or carry them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sortie_core import services
from sortie_core.events import (
    DeadLettered,
    Discovery,
    Evidence,
    LogoutRequested,
    Observed,
    OffboardRequested,
    Outcome,
    RevocationCompleted,
    ServiceTicket,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    StepError,
    StepResult,
    Target,
    utcnow,
)
from sortie_core.steps import Contradicted, RetryPolicy, deadlettered, ended, run_step

from .adapters import AppLogout, SsoSessions, TicketVault
from .discovery import discover, ticket_ref
from .oidc import LogoutTokenSigner
from .plan import (
    AppRunner,
    PlannedStep,
    caller_tickets,
    offboard_wants,
    plan_apps,
    since,
    summary,
    tickets_to_retry,
)
from .registry import Registry

log = logging.getLogger(__name__)

SERVICE = services.ENT
SSO_SERVICE = services.SSO
DESTROY_SSO_SESSION = services.SsoAction.DESTROY_SSO_SESSION.value
DESTROY_ALL_SSO_SESSIONS = services.SsoAction.DESTROY_ALL_SSO_SESSIONS.value
APP_LOGOUT = services.EntAction.APP_LOGOUT.value
NO_APPS = Registry()


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
    vault: TicketVault | None = None,
) -> RevocationCompleted | None:
    """Discover the session's services in the CAS (the TGT's, or every session of the
    user when the caller gave no TGT), then log every application out."""
    if Target.ENT not in event.targets or not event.addressed_to(SERVICE):
        return None
    tgt = event.sso_session.tgt if event.sso_session else None
    began = utcnow()
    found = await discover(
        sso,
        event.subject,
        registry,
        tgt=tgt,
        caller=caller_tickets(event),
        kept=await _kept(vault, event),
    )
    plan = plan_apps(found.tickets, registry, unknown_why=found.error, wants=event.retries)
    runner = AppRunner(apps, policy, concurrency, default_timeout_s, signer)
    steps = await runner.run(plan, event.subject, began)
    return await _report(event, "logout", steps, found.discovery, vault, plan)


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
    vault: TicketVault | None = None,
) -> RevocationCompleted | None:
    """Every SSO session of the user: their services are logged out, and every identity
    application the request asks for."""
    if not event.addressed_to(SERVICE):
        return None
    began = utcnow()
    found = await discover(sso, event.subject, registry, kept=await _kept(vault, event))
    plan = plan_apps(found.tickets, registry, unknown_why=found.error, wants=offboard_wants(event))
    runner = AppRunner(apps, policy, concurrency, default_timeout_s, signer)
    steps = await runner.run(plan, event.subject, began)
    return await _report(event, "offboard", steps, found.discovery, vault, plan)


async def _kept(
    vault: TicketVault | None, event: LogoutRequested | OffboardRequested
) -> tuple[ServiceTicket, ...]:
    """A follow-up's tickets from the earlier attempts (the CAS may have forgotten them)."""
    if vault is None or event.followup is None:
        return ()
    return await vault.kept(str(event.request_id))


async def _report(
    event: LogoutRequested | OffboardRequested,
    kind: str,
    steps: tuple[StepResult, ...],
    discovery: Discovery,
    vault: TicketVault | None,
    plan: Sequence[PlannedStep],
) -> RevocationCompleted:
    retry = tickets_to_retry(plan, steps)
    # What a follow-up will need: the tickets of the applications to try again. Only a
    # follow-up can have kept some before, so a first attempt with nothing to retry (the
    # usual logout) costs no Redis call.
    if vault is not None and (retry or event.followup is not None):
        await vault.keep(str(event.request_id), retry)
    log.info("request %s: ent %s %s", event.request_id, kind, summary(steps))
    return RevocationCompleted.answering(event, SERVICE, steps, discovery)


def sso_action(event: SsoLogoutRequested) -> str:
    return DESTROY_SSO_SESSION if event.tgt and not event.all_sessions else DESTROY_ALL_SSO_SESSIONS


async def handle_sso_logout(
    event: SsoLogoutRequested,
    *,
    sso: SsoSessions,
    policy: RetryPolicy,
    registry: Registry | None = None,
    apps: AppLogout | None = None,
    concurrency: int = 8,
    default_timeout_s: float = 10.0,
    signer: LogoutTokenSigner | None = None,
    vault: TicketVault | None = None,
) -> SsoLogoutCompleted:
    """The last step of every request: end the CAS session, then read back through the
    actuator that the CAS no longer knows the TGT (logout) or lists no session of the
    user (offboarding). The CAS's answer to the delete proves nothing (200 for any TGT).

    Applications named in `app_logout_first` (their tickets were unknown) are logged out
    first, from the tickets the CAS lists now, with `registry` and `apps` (as for a
    logout): once the session is destroyed, the CAS forgets them."""
    action = sso_action(event)
    tgt = event.tgt if action == DESTROY_SSO_SESSION else None
    first = set(event.app_logout_first) if registry and apps else set()
    kept = await vault.kept(str(event.request_id)) if vault is not None and first else ()
    # The step's time covers this look-up (the session's count before the delete).
    began = utcnow()
    before = await discover(
        sso, event.subject, registry if registry and first else NO_APPS, tgt=tgt, kept=kept
    )
    if first and before.error is not None:
        # The orchestrator stops naming them once it waited long enough (sso_apps_first).
        return _deferred(event, action, before.error)
    # Only while the session is there: once it is gone the CAS lists no ticket of it, and
    # an application's absence from its tickets proves nothing.
    live = bool(before.discovery.sso_sessions_found)
    app_steps: tuple[StepResult, ...] = ()
    if registry is not None and apps is not None and first and before.error is None and live:
        plan = plan_apps(
            before.tickets,
            registry,
            wants=first.__contains__,
            absent=f"{before.discovery.source}: GET ssoSessions/users/{{username}}",
        )
        runner = AppRunner(apps, policy, concurrency, default_timeout_s, signer)
        app_steps = await runner.run(plan, event.subject, began)
        log.info("request %s: before sso, ent %s", event.request_id, summary(app_steps))
    step, remaining = await _end_sso_session(event, sso, action, tgt, policy)
    if not app_steps:
        (step,) = since(began, (step,))
    return SsoLogoutCompleted(
        request_id=event.request_id,
        subject=event.subject,
        steps=(step,),
        discovery=_sessions_discovery(before.discovery, remaining),
        app_steps=app_steps,
        app_discovery=before.discovery if app_steps else None,
    )


async def _end_sso_session(
    event: SsoLogoutRequested, sso: SsoSessions, action: str, tgt: str | None, policy: RetryPolicy
) -> tuple[StepResult, int | None]:
    """Destroy the TGT (or every session of the user) and read back that it is gone;
    the step and how many sessions the last read-back still listed (None: no read-back)."""
    username = event.subject.sso_username
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
    log.info(
        "request %s: sso %s=%s (%s)",
        event.request_id,
        action,
        step.outcome.value,
        step.verification.value if step.verification else "-",
    )
    return step, (remaining[0] if remaining else None)


def _sessions_discovery(before: Discovery, remaining: int | None) -> Discovery:
    """The sso report's discovery: it counts sessions (the ent report counts
    applications and tickets)."""
    found = before.sso_sessions_found
    return before.model_copy(
        update={
            "applications": (),
            "tickets_found": None,
            "tickets_from_caller": None,
            "sso_sessions_ended": (
                max(0, found - remaining) if found is not None and remaining is not None else None
            ),
        }
    )


def _deferred(event: SsoLogoutRequested, action: str, why: str) -> SsoLogoutCompleted:
    step = ended(
        action,
        Outcome.FAILED,
        error=StepError(
            code="sso_deferred_for_app_logout",
            message=(
                f"the CAS could not list the session's tickets ({why[:200]}): the "
                f"applications {', '.join(event.app_logout_first[:10])} are logged out first, "
                "the SSO logout is sent again"
            ),
            retryable=True,
        ),
    )
    log.warning("request %s: sso logout deferred, the CAS lists no tickets", event.request_id)
    return SsoLogoutCompleted(request_id=event.request_id, subject=event.subject, steps=(step,))


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
