"""A later phase that failed for a transient reason is followed up like phase 0's steps
(saga/phase_followup.py): sent again with backoff for its failed actions only, healed by a
report that proves them, given up past the horizon, dropped by a cancel; pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sortie_core import streams
from sortie_core.events import (
    OffboardRequested,
    Outcome,
    RevocationCompleted,
    SkipReason,
    StepError,
    StepResult,
    Subject,
    Verification,
)
from sortie_orchestrator import saga
from sortie_orchestrator.profiles import Profiles

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
TIMEOUTS = saga.Timeouts(
    phase1=timedelta(seconds=30),
    sso=timedelta(seconds=60),
    followup_base=timedelta(seconds=4),
    followup_max=timedelta(seconds=60),
    followup_horizon=timedelta(minutes=10),
)
ALICE = Subject(user_id="alice", upn="alice@example.org")
PROFILE = Profiles.model_validate(
    {
        "profiles": {
            "two": {
                "phases": [
                    {"actions": ["block_sign_in"]},
                    {"after": 60, "actions": ["remove_group_memberships", "remove_licenses"]},
                ]
            }
        }
    }
).get("two")


def step(action: str, ok: bool = True, recorded: dict[str, object] | None = None) -> StepResult:
    return StepResult(
        action=action,
        outcome=Outcome.SUCCEEDED if ok else Outcome.FAILED,
        started_at=T0,
        finished_at=T0,
        verification=Verification.VERIFIED if ok else None,
        error=None if ok else StepError(code="graph_throttled", message="429", retryable=True),
        recorded=recorded,
    )


def not_selected(action: str) -> StepResult:
    return StepResult(
        action=action,
        outcome=Outcome.SKIPPED,
        skip_reason=SkipReason.ACTION_NOT_SELECTED,
        started_at=T0,
        finished_at=T0,
    )


def m365(state: saga.SagaState, *steps: StepResult) -> RevocationCompleted:
    return RevocationCompleted(
        request_id=state.request_id, subject=ALICE, service="m365", steps=steps
    )


def deadline(state: saga.SagaState, now: datetime) -> saga.Transition:
    transition = saga.on_deadline(state, now, TIMEOUTS)
    assert transition is not None, state.next_deadline()
    return transition


def phase1_ran_partly() -> saga.SagaState:
    """Phase 0 done, phase 1 started at its date: groups removed, licences throttled."""
    state = saga.new_offboard(uuid.uuid4(), ALICE, "leaver", "hr", [], None, T0, profile=PROFILE)
    state = saga.start(state, [], T0, TIMEOUTS).state
    state.status, state.finished_at = "completed", T0  # phase 0's outcome is not the point
    at = state.phases[0].at
    assert at == T0 + timedelta(seconds=60)
    state = deadline(state, at).state
    report = m365(
        state,
        not_selected("block_sign_in"),
        step("remove_group_memberships", recorded={"group_ids": ["g1"]}),
        step("remove_licenses", ok=False, recorded={"sku_ids": ["sku-a", "sku-b"]}),
    )
    transition = saga.on_revocation(state, report, at + timedelta(seconds=1), TIMEOUTS)
    assert transition is not None
    return transition.state


def test_a_failed_later_phase_is_sent_again_for_its_failed_actions_only() -> None:
    state = phase1_ran_partly()
    phase = state.phases[0]
    assert phase.status == "partial" and phase.followups == {}
    ended = phase.finished_at
    assert ended is not None
    # Due at once: the deadline loop plans the first attempt (backoff from Timeouts).
    assert state.next_deadline() == ended
    planned = deadline(state, ended)
    assert planned.messages == []
    first = planned.state.phases[0].followups["m365"]
    assert first.actions == ["remove_licenses"] and first.attempt == 0
    assert timedelta(seconds=2) <= first.next_at - ended <= timedelta(seconds=4)
    assert planned.state.next_deadline() == first.next_at
    sent = deadline(planned.state, first.next_at)
    [message] = sent.messages
    assert message.stream == streams.OFFBOARD_REQUESTED
    command = message.event
    assert isinstance(command, OffboardRequested)
    assert (command.phase, command.profile) == (1, "two")
    assert command.followup is not None and command.followup.actions == ("remove_licenses",)
    assert command.wants("remove_licenses") and not command.wants("remove_group_memberships")
    again = sent.state.phases[0].followups["m365"]
    assert again.attempt == 1 and again.next_at > first.next_at
    assert any(t.event == "followup_sent" for t in sent.state.timeline)


def test_a_report_that_proves_the_rest_heals_the_phase_and_keeps_the_first_record() -> None:
    state = phase1_ran_partly()
    state = deadline(state, state.phases[0].finished_at or T0).state
    at = state.phases[0].followups["m365"].next_at
    state = deadline(state, at).state
    # The retry reads what is left (one licence): the first attempt's record stays.
    healed = saga.on_revocation(
        state,
        m365(
            state,
            not_selected("block_sign_in"),
            not_selected("remove_group_memberships"),
            step("remove_licenses", recorded={"sku_ids": ["sku-b"]}),
        ),
        at + timedelta(seconds=1),
        TIMEOUTS,
    )
    assert healed is not None
    phase = healed.state.phases[0]
    assert phase.status == "completed" and phase.healed_at == at + timedelta(seconds=1)
    assert phase.followups == {}
    steps = {s.action: s for s in phase.services["m365"].steps}
    assert set(steps) == {"remove_group_memberships", "remove_licenses"}
    assert steps["remove_licenses"].recorded == {"sku_ids": ["sku-a", "sku-b"]}
    assert all(s.done for s in steps.values())
    assert healed.state.next_deadline() is None


def test_the_follow_up_stops_at_the_horizon() -> None:
    state = phase1_ran_partly()
    state = deadline(state, state.phases[0].finished_at or T0).state
    until = state.phases[0].followup_until
    assert until is not None
    now = state.phases[0].followups["m365"].next_at
    sent = 0
    while state.phases[0].followups:
        transition = deadline(state, now)
        sent += len(transition.messages)
        state = transition.state
        if state.phases[0].followups:
            now = state.phases[0].followups["m365"].next_at
    assert sent >= 3 and now > until
    assert state.phases[0].status == "partial"
    assert any(t.event == "followup_given_up" for t in state.timeline)
    assert state.next_deadline() is None


def test_cancel_drops_a_later_phase_follow_up() -> None:
    state = phase1_ran_partly()
    state = deadline(state, state.phases[0].finished_at or T0).state
    cancelled = saga.cancel(state, T0 + timedelta(seconds=62))
    assert cancelled is not None
    assert cancelled.state.phases[0].followups == {}
    assert cancelled.state.next_deadline() is None
    # Cancelled before its first attempt was even planned: never planned.
    fresh = phase1_ran_partly()
    dropped = saga.cancel(fresh, T0 + timedelta(seconds=62))
    assert dropped is not None and dropped.state.next_deadline() is None


def test_a_phase_0_follow_up_keeps_what_the_first_attempt_recorded() -> None:
    from sortie_orchestrator.saga.followup import merge

    svc = saga.ServiceState(state="reported", steps=[
        step("block_sign_in", ok=False, recorded={"account_enabled": True}),
    ])  # fmt: skip
    # The first attempt blocked sign-in but its read-back failed; the retry reads it off.
    merge(svc, (step("block_sign_in", recorded={"account_enabled": False}),))
    [merged] = svc.steps
    assert merged.done and merged.recorded == {"account_enabled": True}
