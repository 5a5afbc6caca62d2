"""Unit tests of the workstation agent's handlers, with the in-memory session backend."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from sortie_core.errors import NotFoundError, PermanentError, TransientError
from sortie_core.events import (
    DeadLettered,
    Outcome,
    Subject,
    Verification,
    WorkstationCommandRequested,
    utcnow,
)
from sortie_core.steps import RetryPolicy
from sortie_workstation.adapters import account_name
from sortie_workstation.adapters.fake import FakeSessions
from sortie_workstation.handlers import (
    handle_admin,
    handle_deadlettered,
    handle_logout,
    handle_offboard,
)
from tests.support.workers import ALICE, logout, offboard

POLICY = RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.002, verify_delay_s=0.001)
HOST = "pc-101"


@pytest.fixture
def backend() -> FakeSessions:
    fake = FakeSessions()
    fake.open(1, "alice")
    fake.open(2, "bob")
    fake.open(3, "SCHOOL\\Alice", station="2")
    return fake


async def test_logout_logs_off_every_session_of_the_user(backend: FakeSessions) -> None:
    event = logout()
    result = await handle_logout(event, host=HOST, backend=backend, policy=POLICY)
    assert (result.service, result.request_id) == ("workstation:pc-101", event.request_id)
    [step] = result.steps
    assert (step.action, step.outcome, step.attempts) == ("logoff", Outcome.SUCCEEDED, 1)
    assert step.detail == "logoff of sessions 1, 3"
    assert backend.calls == [("logoff", 1), ("logoff", 3)]
    assert list(backend.sessions) == [2]


@pytest.mark.parametrize(("policy", "state"), [("lock", "locked"), ("disconnect", "disconnected")])
async def test_logout_follows_the_policy(backend: FakeSessions, policy: str, state: str) -> None:
    result = await handle_logout(
        logout(), host=HOST, backend=backend, policy=POLICY, session_policy=policy
    )
    [step] = result.steps
    assert (step.action, step.outcome) == (policy, Outcome.SUCCEEDED)
    assert backend.calls == [(policy, 1), (policy, 3)]
    assert {i: s.state for i, s in backend.sessions.items()} == {1: state, 2: "active", 3: state}


async def test_already_disconnected_sessions_are_left_alone(backend: FakeSessions) -> None:
    backend.open(1, "alice", state="disconnected")
    result = await handle_logout(
        logout(), host=HOST, backend=backend, policy=POLICY, session_policy="disconnect"
    )
    [step] = result.steps
    assert step.outcome is Outcome.SUCCEEDED
    assert backend.calls == [("disconnect", 3)]
    assert step.detail == "disconnect of session 3; already disconnected: 1"


async def test_shared_station_always_logs_off(backend: FakeSessions) -> None:
    result = await handle_logout(
        logout(),
        host=HOST,
        backend=backend,
        policy=POLICY,
        session_policy="lock",
        shared_station=True,
    )
    browsers, step = result.steps
    assert (browsers.action, browsers.outcome) == ("close_browsers", Outcome.SUCCEEDED)
    assert step.action == "logoff"
    assert step.detail is not None and "shared station: logoff instead of lock" in step.detail
    assert backend.calls == [("close_browsers", "alice"), ("logoff", 1), ("logoff", 3)]


async def test_browsers_that_cannot_be_closed_do_not_stop_the_logoff(
    backend: FakeSessions,
) -> None:
    backend.action_failures = [PermanentError("taskkill: access denied", code="command_failed")]
    result = await handle_logout(
        logout(), host=HOST, backend=backend, policy=POLICY, shared_station=True
    )
    assert [(s.action, s.outcome) for s in result.steps] == [
        ("close_browsers", Outcome.FAILED),
        ("logoff", Outcome.SUCCEEDED),
    ]
    assert result.steps[0].error is not None
    assert result.steps[0].error.message == "taskkill: access denied"


def admin(action: str, subject: Subject, **fields: object) -> WorkstationCommandRequested:
    return WorkstationCommandRequested(
        request_id=uuid.uuid4(),
        subject=subject,
        action=action,  # type: ignore[arg-type]
        deadline=utcnow() + timedelta(seconds=30),
        **fields,  # type: ignore[arg-type]
    )


async def test_admin_ends_one_session_by_id(backend: FakeSessions) -> None:
    order = admin("logoff", Subject(user_id="bob"), session_id="2")
    result = await handle_admin(order, host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert (step.action, step.outcome, step.detail) == (
        "logoff",
        Outcome.SUCCEEDED,
        "logoff of session 2",
    )
    assert backend.calls == [("logoff", 2)]
    again = await handle_admin(order, host=HOST, backend=backend, policy=POLICY)
    assert again.steps[0].outcome is Outcome.NOT_FOUND
    assert again.steps[0].detail == f"no session 2 on {HOST}"


async def test_admin_suspends_a_users_sessions(backend: FakeSessions) -> None:
    result = await handle_admin(
        admin("disconnect", ALICE), host=HOST, backend=backend, policy=POLICY
    )
    [step] = result.steps
    assert step.action == "disconnect" and step.outcome is Outcome.SUCCEEDED
    assert backend.calls == [("disconnect", 1), ("disconnect", 3)]
    assert {s.state for s in backend.sessions.values() if s.user != "bob"} == {"disconnected"}


async def test_admin_ends_every_session_of_the_host(backend: FakeSessions) -> None:
    order = admin("logoff", Subject(user_id="*"), all_sessions=True)
    result = await handle_admin(order, host=HOST, backend=backend, policy=POLICY)
    assert result.steps[0].detail == "logoff of sessions 1, 2, 3"
    assert backend.sessions == {}


async def test_no_session_is_not_found(backend: FakeSessions) -> None:
    result = await handle_logout(
        logout(Subject(user_id="carol")), host=HOST, backend=backend, policy=POLICY
    )
    [step] = result.steps
    assert (step.action, step.outcome) == ("logoff", Outcome.NOT_FOUND)
    assert backend.calls == []


async def test_sessions_gone_meanwhile_are_not_found(backend: FakeSessions) -> None:
    backend.action_failures = [NotFoundError("gone"), NotFoundError("gone")]
    result = await handle_logout(logout(), host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert step.outcome is Outcome.NOT_FOUND
    assert step.detail is not None and "1, 3" in step.detail


async def test_transient_listing_then_success(backend: FakeSessions) -> None:
    backend.list_failures = [TransientError("sim down", code="backend_unreachable")]
    result = await handle_logout(logout(), host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert (step.outcome, step.attempts) == (Outcome.SUCCEEDED, 2)
    # Two listings for the step, one more to read the result back.
    assert backend.list_calls == 3
    assert step.verification is Verification.VERIFIED and step.done
    assert step.evidence is not None and step.evidence.observed["sessions_left"] == 0


async def test_a_logoff_that_leaves_the_session_open_fails(backend: FakeSessions) -> None:
    backend.lying = True
    result = await handle_logout(logout(), host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert step.outcome is Outcome.FAILED and not step.done
    assert step.verification is Verification.CONTRADICTED
    assert step.error is not None and step.error.code == "not_verified"
    assert step.evidence is not None and step.evidence.observed["left_ids"] == "1, 3"


async def test_no_session_of_the_user_is_an_authoritative_not_found(
    backend: FakeSessions,
) -> None:
    backend.sessions.clear()
    backend.open(7, "carol")
    result = await handle_logout(logout(), host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert step.outcome is Outcome.NOT_FOUND and step.done
    assert step.evidence is not None and step.evidence.observed["sessions_listed"] == 1


async def test_retry_after_partial_success_keeps_the_whole_story(backend: FakeSessions) -> None:
    # Session 1 is logged off, then the call for session 3 fails once.
    backend.action_failures = [None, TransientError("blip", code="backend_unreachable")]
    result = await handle_logout(logout(), host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert (step.outcome, step.attempts) == (Outcome.SUCCEEDED, 2)
    assert step.detail == "logoff of sessions 1, 3"
    assert backend.calls == [("logoff", 1), ("logoff", 3), ("logoff", 3)]
    assert list(backend.sessions) == [2]


async def test_permanent_failure_is_reported(backend: FakeSessions) -> None:
    backend.action_failures = [PermanentError("denied", code="backend_rejected")]
    result = await handle_logout(logout(), host=HOST, backend=backend, policy=POLICY)
    [step] = result.steps
    assert step.outcome is Outcome.FAILED
    assert step.error is not None and step.error.code == "backend_rejected"


async def test_offboard_logs_off_whatever_the_policy(backend: FakeSessions) -> None:
    result = await handle_offboard(offboard(), host=HOST, backend=backend, policy=POLICY)
    assert [(s.action, s.outcome) for s in result.steps] == [("logoff", Outcome.SUCCEEDED)]
    assert list(backend.sessions) == [2]
    skipped = await handle_offboard(
        offboard(actions=("block_sign_in",)), host=HOST, backend=backend, policy=POLICY
    )
    assert [(s.action, s.outcome) for s in skipped.steps] == [("logoff", Outcome.SKIPPED)]


def test_account_names_are_compared_without_domain_or_case() -> None:
    assert account_name("SCHOOL\\Alice") == "alice"
    assert account_name(" BOB ") == "bob"
    assert account_name("alice@school.example") == "alice@school.example"


def test_deadlettered_command_reports_its_step_failed() -> None:
    record = DeadLettered(
        stream="workstation.pc-101",
        group="workstation-agent",
        entry_id="1-0",
        reason="max_deliveries",
        detail="",
        deliveries=6,
        data="{}",
    )
    result = handle_deadlettered(logout(), record, host=HOST, session_policy="lock")
    assert result is not None
    assert result.service == "workstation:pc-101"
    [step] = result.steps
    assert (step.action, step.outcome) == ("lock", Outcome.FAILED)
    assert step.error is not None and step.error.code == "deadlettered"
    result = handle_deadlettered(offboard(), record, host=HOST, session_policy="lock")
    assert result is not None and result.steps[0].action == "logoff"
    assert handle_deadlettered(object(), record, host=HOST) is None
