"""Read-backs: after each step, its post-condition as Microsoft 365 itself reports it.

| step | read back | holds when |
| --- | --- | --- |
| block_sign_in | `GET /users/{id}?$select=accountEnabled` | `accountEnabled` is false |
| revoke_sessions | `…?$select=signInSessionsValidFromDateTime` | ≥ the request's start |
| reset_password | `…?$select=lastPasswordChangeDateTime` | ≥ the request's start |
| disable_mail_protocols | Exchange `Get-CASMailbox` | every protocol switch is off |

Both timestamps are v1.0 user properties returned only on `$select`
(https://learn.microsoft.com/graph/api/resources/user): the first moves forward when
sessions are revoked, the second when the password is set. "The request's start" is the
command's `occurred_at` (the orchestrator's clock) minus `skew`: Graph's clock is not ours,
and Graph writes whole seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sortie_core.events import Evidence, M365Action, Observed, utcnow
from sortie_core.steps import Contradicted, Verify

from .adapters import READ_BACK, M365Directory, M365User

_TIMESTAMPS = {a: READ_BACK[a] for a in (M365Action.REVOKE_SESSIONS, M365Action.RESET_PASSWORD)}


def _graph_source(prop: str) -> str:
    return f"graph GET /users/{{id}}?$select={prop}"


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def verifier(
    directory: M365Directory,
    action: M365Action,
    user: M365User,
    since: datetime,
    skew: timedelta,
) -> Verify:
    """The read-back of `action` for `user`, for a request that started at `since`."""
    if action is M365Action.BLOCK_SIGN_IN:

        async def blocked() -> Evidence:
            prop = READ_BACK[action]
            found = (await directory.read_user(user.id, [prop])).get(prop)
            evidence = Evidence(
                source=_graph_source(prop), observed={prop: _observed(found)}, read_at=utcnow()
            )
            if found is not False:
                raise Contradicted(f"Graph reads {prop}={found!r} after blocking", evidence)
            return evidence

        return blocked
    if action in _TIMESTAMPS:
        prop = _TIMESTAMPS[action]
        required = since - skew

        async def moved() -> Evidence:
            found = (await directory.read_user(user.id, [prop])).get(prop)
            evidence = Evidence(
                source=_graph_source(prop),
                observed={prop: _observed(found), "required_at_least": required.isoformat()},
                read_at=utcnow(),
            )
            moment = _parse(found)
            if moment is None or moment < required:
                raise Contradicted(
                    f"Graph reads {prop}={found!r}, earlier than the request "
                    f"({required.isoformat()})",
                    evidence,
                )
            return evidence

        return moved

    async def mailbox_off() -> Evidence:
        switches = await directory.read_mail_protocols(user.upn)
        evidence = Evidence(
            source="exchange InvokeCommand Get-CASMailbox",
            observed=dict(switches),
            read_at=utcnow(),
        )
        still_on = sorted(name for name, on in switches.items() if on)
        if still_on:
            raise Contradicted(f"Exchange reads {', '.join(still_on)} still on", evidence)
        if not switches:
            raise Contradicted("Exchange returned no protocol switch", evidence)
        return evidence

    return mailbox_off


def _observed(value: Any) -> Observed:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)[:200]
