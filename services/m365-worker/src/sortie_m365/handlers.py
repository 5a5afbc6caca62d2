"""What the Microsoft 365 worker does with each command. No Redis here: each handler gets
its adapters and returns the event to publish (or None when there is nothing to say)."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Awaitable, Callable

from pydantic import SecretStr

from sortie_core.events import (
    OFFBOARD_M365_ORDER,
    DeadLettered,
    LogoutRequested,
    M365Action,
    OffboardRequested,
    Outcome,
    RevocationCompleted,
    SkipReason,
    StepResult,
    Target,
    utcnow,
)
from sortie_core.steps import RetryPolicy, deadlettered, run_step, skipped

from .adapters import M365Directory, M365User

log = logging.getLogger(__name__)

SERVICE = "m365"
NO_UPN = "no Microsoft 365 UPN for this subject"

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
            await directory.revoke_sessions(user.id)
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
}


def _from_lookup(action: str, lookup: StepResult) -> StepResult:
    detail = f"{lookup.detail} (user lookup)" if lookup.detail else "user lookup failed"
    return StepResult(
        action=action,
        outcome=lookup.outcome,
        attempts=lookup.attempts,
        started_at=lookup.started_at,
        finished_at=lookup.finished_at,
        error=lookup.error,
        detail=detail,
    )


async def _resolve(
    directory: M365Directory, key: str, policy: RetryPolicy
) -> tuple[M365User | None, StepResult]:
    """Find the user (retried like a step); the lookup's result stands for every step
    when it did not find one."""
    found: list[M365User] = []

    async def body() -> str | None:
        found.append(await directory.find_user(key))
        return None

    lookup = await run_step(SERVICE, "find_user", body, policy)
    return (found[-1] if found and lookup.outcome is Outcome.SUCCEEDED else None), lookup


async def _run_actions(
    actions: list[M365Action],
    upn: str | None,
    directory: M365Directory,
    policy: RetryPolicy,
    password_length: int,
) -> list[StepResult]:
    """Each action in order. A failed step does not stop the next ones (each still closes
    a door); a user Graph does not know ends the calls."""
    if not actions:
        return []
    if not upn:
        return [skipped(a.value, NO_UPN, SkipReason.NOT_CONFIGURED) for a in actions]
    user, lookup = await _resolve(directory, upn, policy)
    if user is None:
        return [_from_lookup(a.value, lookup) for a in actions]
    steps: list[StepResult] = []
    missing_since: str | None = None
    for action in actions:
        if user.guest and action in _GUEST_SKIPS:
            steps.append(skipped(action.value, _GUEST_SKIPS[action], SkipReason.GUEST_BY_POLICY))
        elif missing_since is not None:
            steps.append(_not_found_after(action.value, missing_since))
        else:
            body = _step_body(directory, action, user, password_length)
            step = await run_step(SERVICE, action.value, body, policy)
            if (
                step.outcome is Outcome.NOT_FOUND
                and action is not M365Action.DISABLE_MAIL_PROTOCOLS
            ):
                missing_since = action.value
            steps.append(step)
    return steps


def _not_found_after(action: str, earlier: str) -> StepResult:
    now = utcnow()
    return StepResult(
        action=action,
        outcome=Outcome.NOT_FOUND,
        attempts=0,
        started_at=now,
        finished_at=now,
        detail=f"user not found in Microsoft 365 (reported by {earlier})",
    )


async def handle_logout(
    event: LogoutRequested, *, directory: M365Directory, policy: RetryPolicy
) -> RevocationCompleted | None:
    if Target.M365 not in event.targets:
        return None
    steps = await _run_actions(
        [M365Action.REVOKE_SESSIONS], event.subject.upn, directory, policy, 40
    )
    log.info("request %s: m365 logout %s", event.request_id, steps[0].outcome.value)
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=tuple(steps)
    )


async def handle_offboard(
    event: OffboardRequested,
    *,
    directory: M365Directory,
    policy: RetryPolicy,
    password_length: int = 40,
) -> RevocationCompleted:
    """The offboarding steps the request wants, in the design's order."""
    actions = [a for a in OFFBOARD_M365_ORDER if event.wants(a.value)]
    steps = await _run_actions(actions, event.subject.upn, directory, policy, password_length)
    log.info(
        "request %s: m365 offboard %s",
        event.request_id,
        ", ".join(f"{s.action}={s.outcome.value}" for s in steps) or "no step wanted",
    )
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=tuple(steps)
    )


def expected_actions(event: LogoutRequested | OffboardRequested) -> list[str]:
    if isinstance(event, LogoutRequested):
        return [M365Action.REVOKE_SESSIONS.value] if Target.M365 in event.targets else []
    return [a.value for a in OFFBOARD_M365_ORDER if event.wants(a.value)]


def handle_deadlettered(event: object, record: DeadLettered) -> RevocationCompleted | None:
    """A command given up by the broker: report its steps failed so the request finishes."""
    if not isinstance(event, LogoutRequested | OffboardRequested):
        return None
    if isinstance(event, LogoutRequested) and Target.M365 not in event.targets:
        return None
    steps = tuple(deadlettered(action, record) for action in expected_actions(event))
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=steps
    )
