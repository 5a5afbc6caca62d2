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
    StepError,
    StepResult,
    Target,
    utcnow,
)
from sortie_core.steps import RetryPolicy, run_step, skipped

from .adapters import M365Directory

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
    directory: M365Directory, action: M365Action, upn: str, password_length: int = 40
) -> Callable[[], Awaitable[str | None]]:
    async def body() -> str | None:
        if action is M365Action.BLOCK_SIGN_IN:
            await directory.block_sign_in(upn)
        elif action is M365Action.RESET_PASSWORD:
            # Made, sent and dropped inside this call: never logged, stored or published.
            await directory.reset_password(upn, new_password(password_length))
            return "password replaced by a random one; change required at next sign-in"
        elif action is M365Action.REVOKE_SESSIONS:
            await directory.revoke_sessions(upn)
        else:
            await directory.disable_mail_protocols(upn)
        return None

    return body


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
    action = M365Action.REVOKE_SESSIONS.value
    upn = event.subject.upn
    if not upn:
        step = skipped(action, NO_UPN)
    else:
        step = await run_step(
            SERVICE, action, _step_body(directory, M365Action.REVOKE_SESSIONS, upn), policy
        )
    log.info("request %s: m365 logout %s", event.request_id, step.outcome.value)
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=(step,)
    )


async def handle_offboard(
    event: OffboardRequested,
    *,
    directory: M365Directory,
    policy: RetryPolicy,
    password_length: int = 40,
) -> RevocationCompleted:
    """The offboarding steps in the design's order. A failed step does not stop the next
    ones (each still closes a door); a user Graph does not know ends the calls."""
    upn = event.subject.upn
    steps: list[StepResult] = []
    missing_since: str | None = None
    for action in OFFBOARD_M365_ORDER:
        if not event.wants(action.value):
            continue
        if not upn:
            steps.append(skipped(action.value, NO_UPN))
        elif missing_since is not None:
            steps.append(_not_found_after(action.value, missing_since))
        else:
            step = await run_step(
                SERVICE, action.value, _step_body(directory, action, upn, password_length), policy
            )
            if step.outcome is Outcome.NOT_FOUND:
                missing_since = action.value
            steps.append(step)
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
    now = utcnow()
    error = StepError(
        code="deadlettered",
        message=f"command given up after {record.deliveries} deliveries ({record.reason})",
    )
    steps = tuple(
        StepResult(
            action=action,
            outcome=Outcome.FAILED,
            attempts=record.deliveries,
            started_at=now,
            finished_at=now,
            error=error,
        )
        for action in expected_actions(event)
    )
    return RevocationCompleted(
        service=SERVICE, request_id=event.request_id, subject=event.subject, steps=steps
    )
