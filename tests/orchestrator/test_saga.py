"""The saga's transitions, as pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sortie_core import streams
from sortie_core.events import (
    Outcome,
    RequestFinished,
    RevocationCompleted,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    SsoSession,
    StepError,
    StepResult,
    Subject,
    Target,
)
from sortie_orchestrator import saga

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
TIMEOUTS = saga.Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60))
ALICE = Subject(user_id="alice", upn="alice@example.org", cas_username="alice")


def step(action: str, outcome: Outcome = Outcome.SUCCEEDED, at: datetime = T0) -> StepResult:
    err = StepError(code="x", message="y") if outcome == Outcome.FAILED else None
    return StepResult(
        action=action,
        outcome=outcome,
        attempts=1,
        started_at=at,
        finished_at=at + timedelta(milliseconds=50),
        error=err,
    )


def started(hosts: list[saga.HostPresence] | None = None, targets: list[Target] | None = None):
    state = saga.new_logout(
        uuid.uuid4(),
        ALICE,
        "user_logout",
        targets or [Target.M365, Target.ENT, Target.WORKSTATIONS],
        SsoSession(tgt="TGT-1-abc"),
        T0,
    )
    return saga.start(state, hosts or [], T0, TIMEOUTS)


def report(state: saga.SagaState, service: str, outcome: Outcome = Outcome.SUCCEEDED):
    return RevocationCompleted(
        request_id=state.request_id,
        subject=ALICE,
        service=service,
        steps=(step("revoke_sessions", outcome),),
    )


def sso_report(state: saga.SagaState, outcome: Outcome = Outcome.SUCCEEDED):
    return SsoLogoutCompleted(
        request_id=state.request_id, subject=ALICE, steps=(step("destroy_sso_session", outcome),)
    )


def test_start_publishes_one_command_and_one_per_live_host():
    t = started([saga.HostPresence("pc-1", True), saga.HostPresence("pc-2", False)])
    by_stream = [m.stream for m in t.messages]
    assert by_stream == [streams.LOGOUT_REQUESTED, "workstation.pc-1"]
    assert set(t.state.services) == {"m365", "ent", "workstation:pc-1", "workstation:pc-2"}
    assert t.state.services["workstation:pc-2"].state == "unreachable"
    assert t.state.services["workstation:pc-2"].steps[0].outcome == Outcome.UNREACHABLE
    assert t.messages[0].event.event_id != t.messages[1].event.event_id
    assert t.state.status == "in_progress"


def test_phase2_only_when_every_phase1_service_reported():
    t = started([saga.HostPresence("pc-1", True)])
    state = t.state
    for service in ("m365", "ent"):
        nxt = saga.on_revocation(state, report(state, service), T0, TIMEOUTS)
        assert nxt is not None and nxt.messages == []
        state = nxt.state
    last = saga.on_revocation(state, report(state, "workstation:pc-1"), T0, TIMEOUTS)
    assert last is not None
    assert [m.stream for m in last.messages] == [streams.SSO_LOGOUT_REQUESTED]
    sso = last.messages[0].event
    assert isinstance(sso, SsoLogoutRequested) and sso.tgt == "TGT-1-abc"
    assert last.state.status == "sso_logout"


def test_duplicate_and_unknown_reports_change_nothing():
    t = started()
    s1 = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s1 is not None
    assert saga.on_revocation(s1.state, report(t.state, "m365"), T0, TIMEOUTS) is None
    assert saga.on_revocation(s1.state, report(t.state, "workstation:nope"), T0, TIMEOUTS) is None


def test_deadline_times_out_missing_services_and_still_asks_for_sso():
    t = started()
    s1 = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s1 is not None
    assert saga.on_deadline(s1.state, T0 + timedelta(seconds=29), TIMEOUTS) is None
    late = saga.on_deadline(s1.state, T0 + timedelta(seconds=31), TIMEOUTS)
    assert late is not None
    assert late.state.services["ent"].state == "timed_out"
    assert late.state.services["ent"].steps[0].outcome == Outcome.TIMED_OUT
    assert [m.stream for m in late.messages] == [streams.SSO_LOGOUT_REQUESTED]
    done = saga.on_sso_completed(late.state, sso_report(late.state), T0 + timedelta(seconds=32))
    assert done is not None and done.state.status == "partial"
    # A report after the deadline is kept but changes no outcome.
    after = saga.on_revocation(done.state, report(done.state, "ent"), T0, TIMEOUTS)
    assert after is not None and after.state.services["ent"].late
    assert after.state.status == "partial" and after.messages == []


def test_final_statuses():
    t = started(targets=[Target.M365])
    s1 = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s1 is not None
    ok = saga.on_sso_completed(s1.state, sso_report(s1.state), T0 + timedelta(seconds=2))
    assert ok is not None and ok.state.status == "completed"
    assert ok.state.sso_session is None  # the TGT is dropped when the request ends
    fin = ok.messages[-1].event
    assert isinstance(fin, RequestFinished) and fin.status == "completed"
    assert fin.duration_seconds == 2.0
    bad = saga.on_sso_completed(s1.state, sso_report(s1.state, Outcome.FAILED), T0)
    assert bad is not None and bad.state.status == "failed"
    failed_m365 = saga.on_revocation(t.state, report(t.state, "m365", Outcome.FAILED), T0, TIMEOUTS)
    assert failed_m365 is not None
    partial = saga.on_sso_completed(failed_m365.state, sso_report(failed_m365.state), T0)
    assert partial is not None and partial.state.status == "partial"
    # not_found counts as good: nothing to revoke there.
    nf = saga.on_revocation(t.state, report(t.state, "m365", Outcome.NOT_FOUND), T0, TIMEOUTS)
    assert nf is not None
    fine = saga.on_sso_completed(nf.state, sso_report(nf.state), T0)
    assert fine is not None and fine.state.status == "completed"


def test_sso_deadline_fails_the_request():
    t = started(targets=[Target.M365])
    s1 = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s1 is not None
    out = saga.on_deadline(s1.state, T0 + timedelta(seconds=61), TIMEOUTS)
    assert out is not None and out.state.status == "failed"
    assert out.state.sso is not None and out.state.sso.state == "timed_out"
    assert isinstance(out.messages[-1].event, RequestFinished)


def test_nothing_to_wait_for_goes_straight_to_sso():
    t = started(targets=[Target.WORKSTATIONS])
    assert t.state.status == "sso_logout"
    assert [m.stream for m in t.messages] == [streams.SSO_LOGOUT_REQUESTED]


def test_scheduled_offboarding_and_cancel():
    state = saga.new_offboard(uuid.uuid4(), ALICE, "left", "hr", [], T0 + timedelta(days=1), T0)
    assert state.status == "scheduled" and state.next_deadline() == T0 + timedelta(days=1)
    cancelled = saga.cancel(state, T0)
    assert cancelled is not None and cancelled.state.status == "cancelled"
    assert saga.cancel(cancelled.state, T0) is None
    t = saga.start(state, [], T0 + timedelta(days=1), TIMEOUTS)
    assert [m.stream for m in t.messages] == [streams.OFFBOARD_REQUESTED]
    sso = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert sso is not None
    sso2 = saga.on_revocation(sso.state, report(t.state, "ent"), T0, TIMEOUTS)
    assert sso2 is not None
    msg = sso2.messages[0].event
    assert isinstance(msg, SsoLogoutRequested) and msg.all_sessions and msg.tgt is None
