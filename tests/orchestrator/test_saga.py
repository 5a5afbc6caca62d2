"""The saga's transitions, as pure functions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sortie_core import streams
from sortie_core.events import (
    Discovery,
    Evidence,
    Outcome,
    RequestFinished,
    RevocationCompleted,
    SkipReason,
    SsoLogoutCompleted,
    SsoLogoutRequested,
    SsoSession,
    StepError,
    StepResult,
    Subject,
    Target,
    Verification,
)
from sortie_orchestrator import saga

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
TIMEOUTS = saga.Timeouts(phase1=timedelta(seconds=30), sso=timedelta(seconds=60))
ALICE = Subject(user_id="alice", upn="alice@example.org", cas_username="alice")


def step(
    action: str,
    outcome: Outcome = Outcome.SUCCEEDED,
    at: datetime = T0,
    verification: Verification | None = Verification.VERIFIED,
    **extra: Any,
) -> StepResult:
    err = StepError(code="x", message="y") if outcome == Outcome.FAILED else None
    return StepResult(
        action=action,
        outcome=outcome,
        attempts=1,
        started_at=at,
        finished_at=at + timedelta(milliseconds=50),
        error=err,
        verification=verification if outcome in (Outcome.SUCCEEDED, Outcome.NOT_FOUND) else None,
        **extra,
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


def report(
    state: saga.SagaState,
    service: str,
    outcome: Outcome = Outcome.SUCCEEDED,
    one: StepResult | None = None,
    discovery: Discovery | None = None,
):
    return RevocationCompleted(
        request_id=state.request_id,
        subject=ALICE,
        service=service,
        steps=(one or step("revoke_sessions", outcome),),
        discovery=discovery,
    )


def sso_report(
    state: saga.SagaState, outcome: Outcome = Outcome.SUCCEEDED, one: StepResult | None = None
):
    return SsoLogoutCompleted(
        request_id=state.request_id,
        subject=ALICE,
        steps=(one or step("destroy_sso_session", outcome),),
    )


def test_start_publishes_one_command_and_one_per_live_host():
    t = started([saga.HostPresence("pc-1", True), saga.HostPresence("pc-2", False)])
    by_stream = [m.stream for m in t.messages]
    assert by_stream == [streams.LOGOUT_REQUESTED, "workstation.pc-1", "workstation.pc-2"]
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
    assert isinstance(sso, SsoLogoutRequested) and sso.tgt is None and sso.tgt_stored
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
    # A report after the deadline is kept, marked late, and what it proves counts.
    after = saga.on_revocation(done.state, report(done.state, "ent"), T0, TIMEOUTS)
    assert after is not None and after.state.services["ent"].late
    assert after.state.status == "completed" and after.state.healed_at == T0
    assert [m.stream for m in after.messages] == [streams.REQUEST_FINISHED]


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
    # not_found after an authoritative lookup (verified) counts: nothing to revoke there.
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


EVIDENCE = Evidence(source="graph GET /users/{id}", observed={"accountEnabled": False}, read_at=T0)


def _m365_then_sso(m365: StepResult, sso: StepResult | None = None) -> saga.SagaState:
    t = started(targets=[Target.M365])
    s1 = saga.on_revocation(t.state, report(t.state, "m365", one=m365), T0, TIMEOUTS)
    assert s1 is not None
    done = saga.on_sso_completed(s1.state, sso_report(s1.state, one=sso), T0)
    assert done is not None
    return done.state


@pytest.mark.parametrize(
    ("m365", "status", "proof"),
    [
        (step("block_sign_in"), "completed", "verified"),
        (step("x", verification=Verification.ACKNOWLEDGED), "completed", "acknowledged"),
        # A success nobody could read back proves nothing.
        (step("x", verification=Verification.UNVERIFIED), "partial", "unverified"),
        (step("x", verification=None), "partial", "unverified"),
        # not_found is good only after an authoritative lookup (with its evidence).
        (step("x", Outcome.NOT_FOUND, verification=None), "partial", "not_found without"),
        (
            step("x", Outcome.NOT_FOUND, evidence=EVIDENCE),
            "completed",
            "not_found (verified)",
        ),
        # skipped is good only for a policy reason.
        (step("x", Outcome.SKIPPED), "partial", "skipped without a policy reason"),
        (
            step("x", Outcome.SKIPPED, skip_reason=SkipReason.NOT_CONFIGURED),
            "partial",
            "skipped without a policy reason (not_configured)",
        ),
        (
            step("x", Outcome.SKIPPED, skip_reason=SkipReason.GUEST_BY_POLICY),
            "completed",
            "skipped (guest_by_policy)",
        ),
        (step("x", Outcome.FAILED), "partial", "failed (x)"),
    ],
)
def test_a_step_counts_only_when_proven(m365: StepResult, status: str, proof: str):
    state = _m365_then_sso(m365)
    assert state.status == status
    assert saga.proof_of(state.services["m365"].steps[0]).startswith(proof)
    finished = saga.finished_event(state, T0)
    assert (
        finished.services["m365"]
        .proofs["x" if m365.action == "x" else m365.action]
        .startswith(proof)
    )


@pytest.mark.parametrize("verification", [Verification.ACKNOWLEDGED, Verification.UNVERIFIED, None])
def test_the_sso_step_counts_only_when_read_back(verification: Verification | None):
    """The CAS answers 200 to a TGT delete whatever happened: only the read-back counts."""
    sso = step("destroy_sso_session", verification=verification)
    assert _m365_then_sso(step("block_sign_in"), sso).status == "failed"
    contradicted = step("destroy_sso_session", Outcome.FAILED)
    assert _m365_then_sso(step("block_sign_in"), contradicted).status == "failed"


def test_coverage_sums_what_the_services_found():
    t = started([saga.HostPresence("pc-1", True, age_s=3.5)])
    found = Discovery(
        source="cas ssoSessions actuator",
        sso_sessions_found=2,
        applications=("esper", "mer"),
        tickets_found=3,
        tickets_from_caller=0,
    )
    who = Discovery(source="graph", identity="alice@example.org", identity_tried=("upn",))
    s = saga.on_revocation(t.state, report(t.state, "ent", discovery=found), T0, TIMEOUTS)
    assert s is not None
    s = saga.on_revocation(s.state, report(s.state, "m365", discovery=who), T0, TIMEOUTS)
    assert s is not None
    s = saga.on_revocation(s.state, report(s.state, "workstation:pc-1"), T0, TIMEOUTS)
    assert s is not None and s.state.services["workstation:pc-1"].presence_age_s == 3.5
    cov = saga.coverage(s.state)
    assert cov.m365_identity == "alice@example.org" and cov.m365_identity_tried == ("upn",)
    assert cov.sso_sessions_found == 2 and cov.tickets_found == 3
    assert cov.applications == ("esper", "mer") and cov.hosts == ("pc-1",)
    assert cov.steps_total == 3 and cov.steps_verified == 3 and cov.steps_not_proven == 0


def _unavailable(action: str) -> StepResult:
    return StepResult(
        action=action,
        outcome=Outcome.FAILED,
        started_at=T0,
        finished_at=T0,
        error=StepError(code="http_503", message="down", retryable=True, retry_after_s=30),
    )


def _partial_with_ent_down() -> saga.SagaState:
    t = started(targets=[Target.M365, Target.ENT])
    t.state.sso_session = SsoSession(tgt="TGT-1")
    s = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s is not None
    s = saga.on_revocation(
        s.state, report(s.state, "ent", one=_unavailable("app_logout:mer")), T0, TIMEOUTS
    )
    assert s is not None and s.state.status == "sso_logout"
    done = saga.on_sso_completed(s.state, sso_report(s.state), T0, TIMEOUTS)
    assert done is not None
    return done.state


def test_a_transient_failure_is_followed_up_and_heals_the_request():
    state = _partial_with_ent_down()
    assert state.status == "partial"
    assert list(state.followups) == ["ent"]
    assert state.followups["ent"].actions == ["app_logout:mer"]
    # The peer's Retry-After (30 s) is honoured; the horizon is 24 h away.
    due = state.next_deadline()
    assert due is not None and due >= T0 + timedelta(seconds=30)
    assert state.followup_until == T0 + timedelta(hours=24)
    # The tickets are kept while the application's logout may still be sent again.
    assert state.sso_session is not None
    assert saga.on_deadline(state, due - timedelta(seconds=1), TIMEOUTS) is None
    fired = saga.on_deadline(state, due, TIMEOUTS)
    assert fired is not None
    [msg] = fired.messages
    assert msg.stream == streams.LOGOUT_REQUESTED
    assert msg.event.followup is not None
    assert msg.event.followup.services == ("ent",)
    assert msg.event.followup.actions == ("app_logout:mer",)
    assert msg.event.followup.attempt == 1
    assert msg.event.addressed_to("ent") and not msg.event.addressed_to("m365")
    nxt = fired.state.next_deadline()
    assert nxt is not None and nxt > due
    ok = step("app_logout:mer", verification=Verification.ACKNOWLEDGED)
    healed = saga.on_revocation(fired.state, report(fired.state, "ent", one=ok), due, TIMEOUTS)
    assert healed is not None and healed.refinished
    assert healed.state.status == "completed" and healed.state.healed_at == due
    assert healed.state.followups == {} and healed.state.next_deadline() is None
    assert healed.state.sso_session is None
    [fin] = healed.messages
    assert isinstance(fin.event, RequestFinished) and fin.event.status == "completed"


def test_a_follow_up_for_other_actions_never_overwrites_a_step():
    state = _partial_with_ent_down()
    not_asked = step("app_logout:mer", Outcome.SKIPPED, skip_reason=SkipReason.ACTION_NOT_SELECTED)
    after = saga.on_revocation(state, report(state, "ent", one=not_asked), T0, TIMEOUTS)
    assert after is not None and after.state.status == "partial"
    assert after.state.services["ent"].steps[0].outcome == Outcome.FAILED


def test_follow_ups_stop_at_the_horizon():
    state = _partial_with_ent_down()
    late = T0 + timedelta(hours=25)
    given_up = saga.on_deadline(state, late, TIMEOUTS)
    assert given_up is not None and given_up.messages == []
    assert given_up.state.followups == {} and given_up.state.status == "partial"
    assert given_up.state.sso_session is None
    assert given_up.state.timeline[-1].event == "followup_given_up"


def test_an_sso_logout_that_failed_is_sent_again_with_its_tgt():
    t = started(targets=[Target.M365])
    t.state.sso_session = SsoSession(tgt="TGT-9")
    s = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s is not None
    down = _unavailable("destroy_sso_session")
    failed = saga.on_sso_completed(s.state, sso_report(s.state, one=down), T0, TIMEOUTS)
    assert failed is not None and failed.state.status == "failed"
    assert list(failed.state.followups) == ["sso"] and failed.state.sso_session is not None
    due = failed.state.next_deadline()
    assert due is not None
    fired = saga.on_deadline(failed.state, due, TIMEOUTS)
    assert fired is not None
    [msg] = fired.messages
    # The TGT itself stays out of the stream: the ent-worker reads the credentials key.
    assert isinstance(msg.event, SsoLogoutRequested) and msg.event.tgt is None
    assert msg.event.tgt_stored
    healed = saga.on_sso_completed(fired.state, sso_report(fired.state), due, TIMEOUTS)
    assert healed is not None and healed.state.status == "completed"
    assert healed.state.sso_session is None


def test_a_late_report_heals_a_timed_out_service():
    t = started(targets=[Target.M365, Target.ENT])
    s = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s is not None
    late = saga.on_deadline(s.state, T0 + timedelta(seconds=31), TIMEOUTS)
    assert late is not None
    done = saga.on_sso_completed(late.state, sso_report(late.state), T0, TIMEOUTS)
    assert done is not None and done.state.status == "partial"
    assert "ent" in done.state.followups
    healed = saga.on_revocation(done.state, report(done.state, "ent"), T0, TIMEOUTS)
    assert healed is not None and healed.state.status == "completed"
    assert healed.state.services["ent"].late


def test_hosts_get_no_sso_credentials_and_lapsed_hosts_get_the_command():
    t = started([saga.HostPresence("pc-1", True), saga.HostPresence("pc-2", False)])
    t.state.sso_session = SsoSession(tgt="TGT-1")
    again = saga.start(
        t.state,
        [saga.HostPresence("pc-1", True), saga.HostPresence("pc-2", False)],
        T0,
        TIMEOUTS,
    )
    by_stream = {m.stream: m.event for m in again.messages}
    assert set(by_stream) == {streams.LOGOUT_REQUESTED, "workstation.pc-1", "workstation.pc-2"}
    # No stream carries the credentials; only the ent-worker is told to read them.
    assert by_stream[streams.LOGOUT_REQUESTED].sso_session is None
    assert by_stream[streams.LOGOUT_REQUESTED].sso_session_stored
    for host in ("workstation.pc-1", "workstation.pc-2"):
        assert by_stream[host].sso_session is None and not by_stream[host].sso_session_stored


def test_a_service_that_never_reported_is_sent_everything_again():
    t = started(targets=[Target.M365, Target.ENT])
    s = saga.on_revocation(t.state, report(t.state, "m365"), T0, TIMEOUTS)
    assert s is not None
    late = saga.on_deadline(s.state, T0 + timedelta(seconds=31), TIMEOUTS)
    assert late is not None
    done = saga.on_sso_completed(late.state, sso_report(late.state), T0, TIMEOUTS)
    assert done is not None and done.state.followups["ent"].actions == []
    due = done.state.next_deadline()
    assert due is not None
    fired = saga.on_deadline(done.state, due, TIMEOUTS)
    assert fired is not None
    [msg] = fired.messages
    assert msg.event.followup is not None and msg.event.followup.actions == ()
    assert msg.event.retries("app_logout:esper")


def _ent_without_tickets() -> saga.Transition:
    """M365 done; the ENT worker could not read the CAS, so esper has no ticket."""
    state = started(targets=[Target.M365, Target.ENT]).state
    no_ticket = StepResult(
        action="app_logout:esper",
        outcome=Outcome.FAILED,
        started_at=T0,
        finished_at=T0,
        error=StepError(code="cas_slo_no_ticket", message="CAS down", retryable=False),
    )
    state = saga.on_revocation(state, report(state, "m365"), T0, TIMEOUTS).state  # type: ignore[union-attr]
    cas_down = Discovery(source="cas", error="HTTP 503")
    last = saga.on_revocation(
        state, report(state, "ent", one=no_ticket, discovery=cas_down), T0, TIMEOUTS
    )
    assert last is not None
    return last


def test_apps_whose_tickets_the_cas_could_not_tell_go_before_the_sso_session():
    """The ENT worker could not read the CAS (down): the SSO logout is asked to end those
    applications first, and its report of them completes the ENT service."""
    last = _ent_without_tickets()
    state = last.state
    [command] = [m.event for m in last.messages if m.stream == streams.SSO_LOGOUT_REQUESTED]
    assert isinstance(command, SsoLogoutRequested)
    assert command.app_logout_first == ("app_logout:esper",)

    ended = step("app_logout:esper", verification=Verification.ACKNOWLEDGED)
    done = SsoLogoutCompleted(
        request_id=state.request_id,
        subject=ALICE,
        steps=(step("destroy_sso_session"),),
        app_steps=(ended,),
        app_discovery=Discovery(source="cas", tickets_found=1),
    )
    final = saga.on_sso_completed(last.state, done, T0, TIMEOUTS)
    assert final is not None and final.state.status == "completed"
    assert final.state.services["ent"].steps == [ended]
    assert final.state.services["ent"].discovery == Discovery(source="cas", tickets_found=1)


def test_no_app_goes_first_when_the_cas_answered():
    state = started(targets=[Target.M365, Target.ENT]).state
    state = saga.on_revocation(state, report(state, "m365"), T0, TIMEOUTS).state  # type: ignore[union-attr]
    last = saga.on_revocation(
        state, report(state, "ent", one=step("app_logout:esper")), T0, TIMEOUTS
    )
    assert last is not None
    [command] = [m.event for m in last.messages if m.stream == streams.SSO_LOGOUT_REQUESTED]
    assert isinstance(command, SsoLogoutRequested) and command.app_logout_first == ()


def test_the_sso_logout_stops_waiting_for_the_apps_after_its_window():
    """Past `sso_apps_first` the SSO follow-up no longer names the applications: the
    session is destroyed even though their tickets could not be learnt."""
    waiting = _ent_without_tickets()
    state = waiting.state
    deferred = StepResult(
        action="destroy_all_sso_sessions",
        outcome=Outcome.FAILED,
        started_at=T0,
        finished_at=T0,
        error=StepError(code="sso_deferred_for_app_logout", message="-", retryable=True),
    )
    failed = saga.on_sso_completed(
        waiting.state,
        SsoLogoutCompleted(request_id=state.request_id, subject=ALICE, steps=(deferred,)),
        T0,
        TIMEOUTS,
    )
    assert failed is not None and "sso" in failed.state.followups

    def sso_followup(at: datetime) -> SsoLogoutRequested:
        fired = saga.on_deadline(failed.state, at, TIMEOUTS)  # type: ignore[union-attr]
        assert fired is not None
        [command] = [m.event for m in fired.messages if m.stream == streams.SSO_LOGOUT_REQUESTED]
        assert isinstance(command, SsoLogoutRequested)
        return command

    soon = failed.state.followups["sso"].next_at
    assert sso_followup(soon).app_logout_first == ("app_logout:esper",)
    late = T0 + TIMEOUTS.sso_apps_first + timedelta(seconds=1)
    assert sso_followup(max(soon, late)).app_logout_first == ()


def test_an_sso_report_after_its_deadline_heals_the_request():
    """The SSO logout answered just after its deadline: the request, `failed` at the
    deadline, is `completed` once the late report proves the session gone."""
    state = started(targets=[Target.M365]).state
    asked = saga.on_revocation(state, report(state, "m365"), T0, TIMEOUTS)
    assert asked is not None and asked.state.status == "sso_logout"
    at_deadline = T0 + TIMEOUTS.sso + timedelta(seconds=1)
    timed_out = saga.on_deadline(asked.state, at_deadline, TIMEOUTS)
    assert timed_out is not None and timed_out.state.status == "failed"
    late = saga.on_sso_completed(
        timed_out.state, sso_report(state), at_deadline + timedelta(milliseconds=100), TIMEOUTS
    )
    assert late is not None
    assert late.state.status == "completed" and late.state.healed_at is not None
    assert late.state.sso is not None and late.state.sso.late
    # A copy of the same report changes nothing more.
    assert saga.on_sso_completed(late.state, sso_report(state), at_deadline, TIMEOUTS) is None
