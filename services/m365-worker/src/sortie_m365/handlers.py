"""What the Microsoft 365 worker does with each command. No Redis here: each handler gets
its adapters and returns the event to publish (or None when there is nothing to say)."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import SecretStr

from sortie_core.events import (
    OFFBOARD_M365_ORDER,
    Command,
    DeadLettered,
    Discovery,
    LogoutRequested,
    M365Action,
    OffboardRequested,
    Outcome,
    ReversalRequested,
    RevocationCompleted,
    SkipReason,
    StepResult,
    Target,
    Verification,
)
from sortie_core.metrics import VERIFICATIONS
from sortie_core.services import m365_offboard_actions, m365_reversal_actions
from sortie_core.steps import RetryPolicy, deadlettered, ended, run_step, skipped

from . import leaver, quota
from .adapters import M365Directory, M365User
from .identity import SERVICE, Lookup, Resolution, resolve, with_lookup
from .identity_cache import IdentityCache
from .verify import verifier

log = logging.getLogger(__name__)


_SYMBOLS = "!#$%&()*+,-./:;<=>?@[]^_{|}~"
_ALPHABET = string.ascii_letters + string.digits + _SYMBOLS


def new_password(length: int = 40) -> SecretStr:
    """A password nobody knows: `secrets`-random, with every character class Entra asks for."""
    if length < 32:
        raise ValueError("a replacement password has at least 32 characters")
    classes = (string.ascii_uppercase, string.ascii_lowercase, string.digits, _SYMBOLS)
    chars = [secrets.choice(c) for c in classes]
    chars += [secrets.choice(_ALPHABET) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return SecretStr("".join(chars))


def _step_body(
    directory: M365Directory, action: M365Action, user: M365User, password_length: int = 40
) -> Callable[[], Awaitable[str | None]]:
    async def body() -> str | None:
        if action is M365Action.BLOCK_SIGN_IN:
            await directory.block_sign_in(user.id)
        elif action is M365Action.RESET_PASSWORD:
            # Made, sent and dropped inside this call: never logged, stored or published.
            await directory.reset_password(user.id, new_password(password_length))
            return "password replaced by a random one; change required at next sign-in"
        elif action is M365Action.REVOKE_SESSIONS:
            key = (id(directory), "revoke", user.id)
            if await quota.REVOCATIONS.run(key, lambda: directory.revoke_sessions(user.id)):
                return quota.JOINED
        else:
            await directory.disable_mail_protocols(user.upn)
        return None

    return body


# Entra B2B guests sign in at their home tenant: what lives there is out of our reach
# (https://learn.microsoft.com/entra/external-id/user-properties).
_GUEST_SKIPS = {
    M365Action.REVOKE_SESSIONS: "guest account: its sessions belong to its home tenant; "
    "revocation does not apply",
    M365Action.RESET_PASSWORD: "guest account: it has no password in this tenant",
    M365Action.DISABLE_MAIL_PROTOCOLS: "guest account: it has no mailbox in this tenant",
    **dict.fromkeys(leaver.MAILBOX_ACTIONS, "guest account: it has no mailbox in this tenant"),
    M365Action.REMOVE_AUTH_METHODS: "guest account: its methods belong to its home tenant",
    M365Action.DELEGATE_ONEDRIVE: "guest account: it has no OneDrive in this tenant",
}


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """How users are found and their steps read back (settings: IDENTITY_LOOKUPS,
    VERIFY_CLOCK_SKEW_S)."""

    lookups: tuple[Lookup, ...] = ()
    skew: timedelta = timedelta(seconds=5)
    # Resolved users kept per process (settings: IDENTITY_CACHE_SIZE, IDENTITY_CACHE_TTL_S).
    cache: IdentityCache | None = None


def _unresolved(action: str, found: Resolution) -> StepResult:
    """A step that stands for a lookup that found no one: `not_found` with the lookups as
    evidence when Graph answered every one of them, else failed with why. Counted in the
    step metrics like any step."""
    if found.unknown:
        VERIFICATIONS.labels(SERVICE, Verification.VERIFIED.value).inc()
        return ended(
            action,
            Outcome.NOT_FOUND,
            attempts=found.attempts,
            started_at=found.started_at,
            detail="user not found in Microsoft 365 by any identifier known",
            verification=Verification.VERIFIED,
            evidence=found.evidence(),
            observed_by=SERVICE,
        )
    return ended(
        action,
        Outcome.FAILED,
        attempts=found.attempts,
        started_at=found.started_at,
        error=found.error,
        observed_by=SERVICE,
    )


async def _run_actions(
    event: LogoutRequested | OffboardRequested,
    actions: list[M365Action],
    directory: M365Directory,
    policy: RetryPolicy,
    identity: IdentityConfig,
    password_length: int,
    ops: leaver.LeaverOps | None = None,
) -> tuple[list[StepResult], Discovery | None]:
    """Each action in order, once the user is resolved. A failed step does not stop the
    next ones (each still closes a door); a user Graph does not know ends the calls."""
    if not actions:
        return [], None
    quota.PRIORITY.set(quota.OFFBOARD if isinstance(event, OffboardRequested) else quota.LOGOUT)
    found = await resolve(event.subject, identity.lookups, directory, policy, identity.cache)
    user = found.user
    if user is None:
        return [_unresolved(a.value, found) for a in actions], found.discovery()
    steps: list[StepResult] = []
    missing_since: str | None = None
    for action in actions:
        if user.guest and action in _GUEST_SKIPS:
            steps.append(skipped(action.value, _GUEST_SKIPS[action], SkipReason.GUEST_BY_POLICY))
        elif missing_since is not None:
            steps.append(_not_found_after(action.value, missing_since))
        else:
            if action in leaver.ACTIONS and isinstance(event, OffboardRequested):
                step = await leaver.run(ops or leaver.LeaverOps(), action, user, event, policy)
            else:
                body = _step_body(directory, action, user, password_length)
                check = verifier(directory, action, user, event.occurred_at, identity.skew)
                prior = await leaver.prior_state(directory, action, user)
                waited = quota.watching_waits()
                step = await run_step(
                    SERVICE,
                    action.value,
                    body,
                    policy,
                    verify=check,
                    # A follow-up: the first command may have been done meanwhile (a backlog).
                    verify_first=event.followup is not None,
                )
                step = leaver.with_record(quota.note_wait(step, waited), prior)
            if (
                step.outcome is Outcome.NOT_FOUND
                and action is not M365Action.DISABLE_MAIL_PROTOCOLS
            ):
                missing_since = action.value
            steps.append(step)
    if missing_since is not None and found.cached and identity.cache is not None:
        # Gone under the id the cache gave: resolve again, from Graph this time.
        identity.cache.forget(user.id)
        return await _run_actions(event, actions, directory, policy, identity, password_length)
    if steps:
        steps[0] = with_lookup(steps[0], found)
    return steps, found.discovery()


def _not_found_after(action: str, earlier: str) -> StepResult:
    """Graph said the user is gone in an earlier step: that step's word, not a lookup by
    every identifier, so this proves nothing (no evidence)."""
    return ended(
        action, Outcome.NOT_FOUND, detail=f"user not found in Microsoft 365 (reported by {earlier})"
    )


async def handle_logout(
    event: LogoutRequested,
    *,
    directory: M365Directory,
    policy: RetryPolicy,
    identity: IdentityConfig = IdentityConfig(),
) -> RevocationCompleted | None:
    if Target.M365 not in event.targets or not event.addressed_to(SERVICE):
        return None
    steps, discovery = await _run_actions(
        event, [M365Action.REVOKE_SESSIONS], directory, policy, identity, 40
    )
    log.info("request %s: m365 logout %s", event.request_id, steps[0].outcome.value)
    return RevocationCompleted.answering(event, SERVICE, steps, discovery)


async def handle_offboard(
    event: OffboardRequested,
    *,
    directory: M365Directory,
    policy: RetryPolicy,
    identity: IdentityConfig = IdentityConfig(),
    password_length: int = 40,
    ops: leaver.LeaverOps | None = None,
) -> RevocationCompleted | None:
    """The design's four steps in their order (those the request does not want reported
    skipped, `action_not_selected`), then the leaver actions it names, in its order. A
    follow-up for another service is not for this one."""
    if not event.addressed_to(SERVICE):
        return None
    wanted = [a for a in OFFBOARD_M365_ORDER if event.wants(a.value)]
    extra = [M365Action(a) for a in m365_offboard_actions(event.actions) if event.wants(a)]
    wanted += [a for a in extra if a in leaver.ACTIONS]
    done, discovery = await _run_actions(
        event, wanted, directory, policy, identity, password_length, ops
    )
    ran = {s.action: s for s in done}
    steps = [
        ran.get(a.value)
        or skipped(a.value, "not among the request's actions", SkipReason.ACTION_NOT_SELECTED)
        for a in OFFBOARD_M365_ORDER
    ] + [ran[a.value] for a in wanted if a in leaver.ACTIONS]
    return report("offboard", event, steps, discovery)


def report(
    what: str, event: Command, steps: list[StepResult], discovery: Discovery | None
) -> RevocationCompleted:
    """The report of a command, logged in one line (outcomes only)."""
    log.info(
        "request %s: m365 %s %s",
        event.request_id,
        what,
        ", ".join(f"{s.action}={s.outcome.value}" for s in steps),
    )
    return RevocationCompleted.answering(event, SERVICE, steps, discovery)


def expected_actions(event: LogoutRequested | OffboardRequested) -> list[str]:
    if isinstance(event, LogoutRequested):
        return [M365Action.REVOKE_SESSIONS.value] if Target.M365 in event.targets else []
    default = [a.value for a in OFFBOARD_M365_ORDER if event.wants(a.value)]
    named = [a for a in m365_offboard_actions(event.actions) if event.wants(a)]
    return default + [a for a in named if a in leaver.ACTIONS]


def handle_deadlettered(event: object, record: DeadLettered) -> RevocationCompleted | None:
    """A command given up by the broker: report its steps failed so the request finishes."""
    if isinstance(event, ReversalRequested):
        names = m365_reversal_actions(event.restore, event.issue_temporary_access_pass)
    elif isinstance(event, LogoutRequested | OffboardRequested):
        names = expected_actions(event)
    else:
        return None
    if isinstance(event, LogoutRequested) and Target.M365 not in event.targets:
        return None
    steps = tuple(deadlettered(action, record) for action in names)
    return RevocationCompleted.answering(event, SERVICE, steps)
