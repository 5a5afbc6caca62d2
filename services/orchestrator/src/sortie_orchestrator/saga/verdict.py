"""The verdict on a request: how each step is proven, the request's final status, where
the user had access (coverage), and the `request.finished` event that says it all.
"""

from __future__ import annotations

from datetime import datetime

from sortie_core import services as services_
from sortie_core.events import (
    Coverage,
    Kind,
    Outcome,
    RequestFinished,
    ServiceSummary,
    StepResult,
    Verification,
)
from sortie_orchestrator.saga.state import SagaState, Status, all_services

# Requests that end after phase 1: an administrator's order, a reversal.
NO_SSO = (Kind.WORKSTATION_ADMIN, Kind.REVERSAL)


def final_status(state: SagaState) -> Status:
    """`completed` only when every step is proven (StepResult.done) and the SSO session's
    end was read back from the CAS (`verified`: its answer to a delete proves nothing);
    `failed` when the SSO session may still be alive; `partial` otherwise."""
    if state.kind in NO_SSO:
        good = [
            svc.state != "pending" and all(s.done for s in svc.steps)
            for svc in state.services.values()
        ]
        return "completed" if all(good) else "partial" if any(good) else "failed"
    sso_ok = (
        state.sso is not None
        and state.sso.state == "reported"
        and bool(state.sso.steps)
        and all(s.done and s.verification == Verification.VERIFIED for s in state.sso.steps)
    )
    if not sso_ok:
        return "failed"
    # A service given up at the deadline counts once a late report proves its steps.
    phase1_ok = all(
        svc.state != "pending" and all(s.done for s in svc.steps) for svc in state.services.values()
    )
    return "completed" if phase1_ok else "partial"


def proof_of(step: StepResult) -> str:
    """`verified`, `acknowledged`, or in a few words why the step proves nothing."""
    if step.done:
        if step.outcome == Outcome.SKIPPED:
            return f"skipped ({step.skip_reason.value if step.skip_reason else 'policy'})"
        if step.outcome == Outcome.NOT_FOUND:
            return "not_found (verified)"
        return (step.verification or Verification.ACKNOWLEDGED).value
    if step.outcome == Outcome.SKIPPED:
        why = step.skip_reason.value if step.skip_reason else "no policy reason"
        return f"skipped without a policy reason ({why})"
    if step.outcome == Outcome.NOT_FOUND:
        return "not_found without an authoritative lookup"
    if step.outcome == Outcome.SUCCEEDED:
        return (step.verification or Verification.UNVERIFIED).value
    code = step.error.code if step.error else step.outcome.value
    return f"{step.outcome.value} ({code})"


def coverage(state: SagaState) -> Coverage:
    """Where the user had access and what was ended, from the services' own reports."""
    m365 = state.services.get("m365")
    m365_found = m365.discovery if m365 else None
    found = [s.discovery for s in all_services(state).values() if s.discovery is not None]

    def largest(attr: str) -> int | None:
        values = [getattr(d, attr) for d in found if getattr(d, attr) is not None]
        return max(values) if values else None

    steps = [step for svc in all_services(state).values() for step in svc.steps]
    proven = [s for s in steps if s.done]
    verified = [s for s in proven if s.verification == Verification.VERIFIED]
    return Coverage(
        m365_identity=m365_found.identity if m365_found else None,
        m365_identity_tried=m365_found.identity_tried if m365_found else (),
        sso_sessions_found=largest("sso_sessions_found"),
        sso_sessions_ended=state.sso.discovery.sso_sessions_ended
        if state.sso and state.sso.discovery
        else None,
        applications=tuple(sorted({a for d in found for a in d.applications})),
        tickets_found=largest("tickets_found"),
        tickets_from_caller=largest("tickets_from_caller"),
        hosts=tuple(sorted(h for n in state.services if (h := services_.host_of(n)))),
        steps_total=len(steps),
        steps_verified=len(verified),
        steps_acknowledged=len(proven) - len(verified),
        steps_not_proven=len(steps) - len(proven),
    )


def finished_event(state: SagaState, now: datetime) -> RequestFinished:
    services = {
        name: ServiceSummary(
            state=svc.state,
            outcomes={s.action: s.outcome for s in svc.steps},
            proofs={s.action: proof_of(s) for s in svc.steps},
        )
        for name, svc in all_services(state).items()
    }
    status = state.status
    assert status in ("completed", "partial", "failed", "cancelled")
    return RequestFinished(
        request_id=state.request_id,
        subject=state.subject,
        kind=state.kind,
        status=status,
        duration_seconds=state.duration_seconds() or 0.0,
        services=services,
        coverage=coverage(state),
        occurred_at=now,
    )
