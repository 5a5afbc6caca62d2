"""Reversal: a request that restores what an offboarding recorded (each step's
`recorded`: the prior state it changed), never the old password: the m365-worker issues a
Temporary Access Pass instead, sealed to a key only the person who asked holds
(sortie_core.sealed).

A reversal is a request like any other (kind `reversal`): steps, evidence, timeline,
audit; it has no SSO phase. The original shows `reversed_by`, the reversal `reverses`.
Pure functions; `saga` builds the state, the handlers store it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sortie_core.events import M365Action, Outcome
from sortie_core.records import Record
from sortie_core.services import M365_RESTORE_ACTIONS, MAIL_PROTOCOLS
from sortie_core.services import m365_reversal_actions as reversal_actions

if TYPE_CHECKING:
    from sortie_orchestrator.saga.state import SagaState

__all__ = ["NotReversible", "check", "reactivation_restore", "restore_of", "reversal_actions"]


class NotReversible(Exception):
    """Why a request cannot be reversed (a 409 at the API)."""


def _steps(state: SagaState) -> list[tuple[str, Record]]:
    """Every (action, recorded) of the request, phase 0 then the later phases."""
    steps = [s for svc in state.services.values() for s in svc.steps]
    steps += [s for p in state.phases for svc in p.services.values() for s in svc.steps]
    return [
        (s.action, s.recorded)
        for s in steps
        if s.recorded and s.outcome in (Outcome.SUCCEEDED, Outcome.FAILED)
    ]


def restore_of(state: SagaState) -> dict[str, Record]:
    """The original's records, per action, restorable ones only (never the password)."""
    return {a: dict(r) for a, r in _steps(state) if a in M365_RESTORE_ACTIONS}


def reactivation_restore() -> dict[str, Record]:
    """A reactivation with no offboarding on record: what the DESIGN's default offboarding
    turns off, turned back on (the m365-worker reads the current state before it acts)."""
    return {
        M365Action.BLOCK_SIGN_IN.value: {"account_enabled": True},
        M365Action.DISABLE_MAIL_PROTOCOLS.value: {"protocols": dict.fromkeys(MAIL_PROTOCOLS, True)},
    }


def check(state: SagaState) -> dict[str, Record]:
    """What reversing `state` restores; NotReversible says why it cannot be."""
    from sortie_core.events import Kind

    if state.kind != Kind.OFFBOARD:
        raise NotReversible(f"only an offboarding can be reversed; this is a {state.kind.value}")
    if not state.finished or state.status == "cancelled":
        raise NotReversible(
            f"only a finished offboarding can be reversed; this one is {state.status}"
        )
    if any(p.status == "running" for p in state.phases):
        raise NotReversible("a later phase of this offboarding is running; try again after it")
    if state.reversed_by is not None:
        raise NotReversible(f"already reversed by /v1/requests/{state.reversed_by}")
    restore = restore_of(state)
    if not restore:
        raise NotReversible("this offboarding recorded nothing that can be restored")
    return restore
