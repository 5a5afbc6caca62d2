"""Unit tests of the Microsoft 365 handlers, with the in-memory directory."""

from __future__ import annotations

import logging
import string

import pytest

from sortie_core.errors import NotFoundError, PermanentError, ThrottledError, TransientError
from sortie_core.events import DeadLettered, Outcome, SkipReason, Subject, Target, Verification
from sortie_core.steps import RetryPolicy
from sortie_m365.adapters import MAIL_PROTOCOLS
from sortie_m365.adapters.fake import FakeDirectory
from sortie_m365.handlers import handle_deadlettered, handle_logout, handle_offboard, new_password
from tests.support.workers import ALICE, logout, offboard

POLICY = RetryPolicy(max_attempts=3, base_s=0.001, max_s=0.002, verify_delay_s=0.001)
UPN = "alice@example.org"


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory.with_users([UPN, "bob@example.org"])


async def test_logout_revokes_sessions(directory: FakeDirectory) -> None:
    event = logout()
    result = await handle_logout(event, directory=directory, policy=POLICY)
    assert result is not None
    assert result.service == "m365"
    assert result.request_id == event.request_id
    assert result.subject == event.subject
    [step] = result.steps
    assert (step.action, step.outcome, step.attempts) == ("revoke_sessions", Outcome.SUCCEEDED, 1)
    assert step.verification is Verification.VERIFIED and step.done
    assert step.evidence is not None
    assert "signInSessionsValidFromDateTime" in step.evidence.observed
    assert directory.calls == [("revoke_sessions", UPN)]
    assert directory.reads == [("read_user", UPN)]
    assert directory.users[UPN].revocations == 1
    assert result.discovery is not None
    assert result.discovery.identity == f"{UPN} ({UPN})"
    assert result.discovery.identity_tried == (f"upn={UPN}: found",)


async def test_logout_not_targeted_publishes_nothing(directory: FakeDirectory) -> None:
    event = logout(targets=(Target.ENT, Target.WORKSTATIONS))
    assert await handle_logout(event, directory=directory, policy=POLICY) is None
    assert directory.calls == []


async def test_logout_without_identity_fails_unresolved(directory: FakeDirectory) -> None:
    result = await handle_logout(
        logout(Subject(user_id="carol")), directory=directory, policy=POLICY
    )
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.FAILED and not step.done
    assert step.error is not None and step.error.code == "identity_unresolved"
    assert "no upn" in step.error.message and "IDENTITY_LOOKUPS" in step.error.message
    assert directory.calls == [] and directory.lookups == []
    assert result.discovery is not None and result.discovery.identity is None


async def test_logout_unknown_user_is_an_authoritative_not_found() -> None:
    directory = FakeDirectory.with_users(["bob@example.org"])
    result = await handle_logout(logout(), directory=directory, policy=POLICY)
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.NOT_FOUND and step.error is None
    # Looked up by every identifier known: the lookups are the evidence, so it counts.
    assert step.verification is Verification.VERIFIED and step.done
    assert step.evidence is not None
    assert step.evidence.observed["tried"] == f"upn={UPN}: no user; mail={UPN}: no user"
    assert step.evidence.observed["users_found"] == 0
    assert directory.lookups == [UPN, f"mail={UPN}"]


async def test_logout_transient_then_success_counts_attempts(directory: FakeDirectory) -> None:
    directory.fail(
        "revoke_sessions",
        TransientError("reset by peer", code="graph_unreachable"),
        ThrottledError("slow down", code="graph_throttled", retry_after=0.01),
    )
    result = await handle_logout(logout(), directory=directory, policy=POLICY)
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.SUCCEEDED
    assert step.attempts == 3
    assert step.error is None
    assert len(directory.calls) == 3


async def test_logout_transient_until_exhausted_fails_retryable(directory: FakeDirectory) -> None:
    directory.fail("revoke_sessions", *[TransientError("down", code="graph_unavailable")] * 3)
    result = await handle_logout(logout(), directory=directory, policy=POLICY)
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.FAILED
    assert step.attempts == POLICY.max_attempts
    assert step.error is not None
    assert (step.error.code, step.error.retryable) == ("graph_unavailable", True)


async def test_logout_permanent_error_fails_at_once(directory: FakeDirectory) -> None:
    directory.fail("revoke_sessions", PermanentError("no permission", code="graph_forbidden"))
    result = await handle_logout(logout(), directory=directory, policy=POLICY)
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.FAILED
    assert step.attempts == 1
    assert step.error is not None
    assert (step.error.code, step.error.retryable) == ("graph_forbidden", False)
    assert directory.users[UPN].revocations == 0


async def test_offboard_runs_every_step_in_the_design_order() -> None:
    directory = FakeDirectory.with_users([UPN], mail_protocols_supported=True)
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    assert [s.action for s in result.steps] == [
        "block_sign_in",
        "reset_password",
        "revoke_sessions",
        "disable_mail_protocols",
    ]
    assert [c[0] for c in directory.calls] == [s.action for s in result.steps]
    assert all(s.outcome is Outcome.SUCCEEDED for s in result.steps)
    assert all(s.verification is Verification.VERIFIED and s.done for s in result.steps)
    evidence = {s.action: s.evidence for s in result.steps}
    assert all(e is not None for e in evidence.values())
    assert evidence["block_sign_in"].observed == {"accountEnabled": False}  # type: ignore[union-attr]
    assert "lastPasswordChangeDateTime" in evidence["reset_password"].observed  # type: ignore[union-attr]
    assert set(evidence["disable_mail_protocols"].observed.values()) == {False}  # type: ignore[union-attr]
    # The state block_sign_in and disable_mail_protocols change is read first (recorded).
    assert [r[0] for r in directory.reads] == ["read_user"] * 4 + ["read_mail_protocols"] * 2
    recorded = {s.action: s.recorded for s in result.steps}
    assert recorded["block_sign_in"] == {"account_enabled": True}
    assert recorded["disable_mail_protocols"] == {"protocols": dict.fromkeys(MAIL_PROTOCOLS, True)}
    assert recorded["reset_password"] is None
    user = directory.users[UPN]
    assert not user.enabled
    assert user.password is not None
    assert user.revocations == 1
    assert not user.mail_protocols_enabled


async def test_offboard_reports_mail_protocols_skipped_without_adapter(
    directory: FakeDirectory,
) -> None:
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    by_action = {s.action: s for s in result.steps}
    step = by_action["disable_mail_protocols"]
    assert step.outcome is Outcome.SKIPPED
    assert step.detail == "mailbox protocols adapter not configured"
    assert step.skip_reason is SkipReason.DISABLED_BY_CONFIGURATION and step.done
    assert by_action["revoke_sessions"].outcome is Outcome.SUCCEEDED


async def test_offboard_runs_only_wanted_actions_in_order(directory: FakeDirectory) -> None:
    event = offboard(actions=("revoke_sessions", "block_sign_in", "logoff"))
    result = await handle_offboard(event, directory=directory, policy=POLICY)
    assert [(s.action, s.outcome) for s in result.steps] == [
        ("block_sign_in", Outcome.SUCCEEDED),
        ("reset_password", Outcome.SKIPPED),
        ("revoke_sessions", Outcome.SUCCEEDED),
        ("disable_mail_protocols", Outcome.SKIPPED),
    ]
    assert {s.skip_reason for s in result.steps if s.outcome is Outcome.SKIPPED} == {
        SkipReason.ACTION_NOT_SELECTED
    }
    assert [c[0] for c in directory.calls] == ["block_sign_in", "revoke_sessions"]
    assert directory.users[UPN].password is None


async def test_offboard_with_no_m365_action_still_reports(directory: FakeDirectory) -> None:
    # The orchestrator waits for m365 on every offboarding: the report ends that wait.
    result = await handle_offboard(
        offboard(actions=("logoff",)), directory=directory, policy=POLICY
    )
    assert [s.skip_reason for s in result.steps] == [SkipReason.ACTION_NOT_SELECTED] * 4
    assert all(s.done for s in result.steps)
    assert directory.calls == [] and directory.lookups == []


async def test_offboard_not_found_stops_the_calls() -> None:
    directory = FakeDirectory.with_users(["bob@example.org"])
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    assert [s.outcome for s in result.steps] == [Outcome.NOT_FOUND] * 4
    # The lookups find no one: no write is attempted.
    assert directory.lookups == [UPN, f"mail={UPN}"]
    assert directory.calls == []
    # Each step reports the lookups that stood for it, and their evidence.
    assert [s.attempts for s in result.steps] == [2, 2, 2, 2]
    assert all(s.done and s.evidence is not None for s in result.steps)


async def test_offboard_user_gone_after_lookup_stops_the_calls() -> None:
    directory = FakeDirectory.with_users([UPN])
    directory.fail("block_sign_in", NotFoundError("user not found in Microsoft 365 (fake)"))
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    assert [s.outcome for s in result.steps] == [Outcome.NOT_FOUND] * 4
    assert directory.calls == [("block_sign_in", UPN)]
    assert [s.attempts for s in result.steps] == [1, 0, 0, 0]
    assert result.steps[1].detail is not None and "block_sign_in" in result.steps[1].detail
    # A write's 404 is not a lookup by every identifier: it proves nothing.
    assert not any(s.done for s in result.steps)


async def test_guest_is_reported_and_only_blocked() -> None:
    directory = FakeDirectory.with_users([UPN], mail_protocols_supported=True)
    directory.users[UPN].guest = True
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    assert [(s.action, s.outcome) for s in result.steps] == [
        ("block_sign_in", Outcome.SUCCEEDED),
        ("reset_password", Outcome.SKIPPED),
        ("revoke_sessions", Outcome.SKIPPED),
        ("disable_mail_protocols", Outcome.SKIPPED),
    ]
    assert all("guest account" in (s.detail or "") for s in result.steps[1:])
    assert {s.skip_reason for s in result.steps[1:]} == {SkipReason.GUEST_BY_POLICY}
    assert all(s.done for s in result.steps)
    assert directory.calls == [("block_sign_in", UPN)]
    logout_result = await handle_logout(logout(), directory=directory, policy=POLICY)
    assert logout_result is not None
    [step] = logout_result.steps
    assert step.outcome is Outcome.SKIPPED and "revocation does not apply" in (step.detail or "")


async def test_lookup_failure_fails_every_step_with_its_error() -> None:
    directory = FakeDirectory.with_users([UPN])
    directory.fail("get_user", *[TransientError("down", code="graph_unavailable")] * 4)
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    assert {s.outcome for s in result.steps} == {Outcome.FAILED}
    # Three tries of the UPN, then the mail filter (no user): the failed lookup stands.
    assert {(s.error.code, s.error.retryable, s.attempts) for s in result.steps if s.error} == {
        ("graph_unavailable", True, POLICY.max_attempts + 1)
    }
    message = result.steps[0].error.message  # type: ignore[union-attr]
    assert f"upn={UPN}: graph_unavailable" in message and f"mail={UPN}: no user" in message
    assert directory.calls == []


async def test_offboard_failed_step_does_not_stop_the_next(directory: FakeDirectory) -> None:
    directory.fail("block_sign_in", PermanentError("denied", code="graph_forbidden"))
    directory.fail("reset_password", NotFoundError("gone between two calls"))
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    outcomes = {s.action: s.outcome for s in result.steps}
    assert outcomes["block_sign_in"] is Outcome.FAILED
    assert outcomes["reset_password"] is Outcome.NOT_FOUND
    # After a not_found, the rest is not_found without a call.
    assert outcomes["revoke_sessions"] is Outcome.NOT_FOUND
    assert [c[0] for c in directory.calls] == ["block_sign_in", "reset_password"]


async def test_offboard_without_identity_fails_each_step(directory: FakeDirectory) -> None:
    result = await handle_offboard(
        offboard(Subject(user_id="x")), directory=directory, policy=POLICY
    )
    assert [s.outcome for s in result.steps] == [Outcome.FAILED] * 4
    assert {s.error.code for s in result.steps if s.error} == {"identity_unresolved"}
    assert directory.calls == []


def test_new_password_is_long_random_and_mixed() -> None:
    first, second = new_password(), new_password()
    value = first.get_secret_value()
    assert len(value) >= 32
    assert any(c in string.ascii_uppercase for c in value)
    assert any(c in string.ascii_lowercase for c in value)
    assert any(c in string.digits for c in value)
    assert any(not c.isalnum() for c in value)
    assert value != second.get_secret_value()
    assert value not in repr(first) and value not in str(first)
    assert len(new_password(64).get_secret_value()) == 64
    with pytest.raises(ValueError):
        new_password(31)


@pytest.mark.parametrize("run", range(20))
def test_new_password_always_has_every_class(run: int) -> None:
    value = new_password(32).get_secret_value()
    classes = [str.isupper, str.islower, str.isdigit, lambda c: not c.isalnum()]
    assert all(any(check(c) for c in value) for check in classes)


async def test_password_is_never_logged_nor_published(
    directory: FakeDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A transient failure on the reset makes run_step log a retry as well.
    directory.fail("reset_password", TransientError("blip", code="graph_unreachable"))
    result = await handle_offboard(offboard(), directory=directory, policy=POLICY)
    stored = directory.users[UPN].password
    assert stored is not None
    password = stored.get_secret_value()
    assert len(password) >= 32
    assert any("reset_password" in r.getMessage() for r in caplog.records)  # logs were captured
    assert password not in caplog.text
    assert password not in result.model_dump_json()
    reset = next(s for s in result.steps if s.action == "reset_password")
    assert reset.outcome is Outcome.SUCCEEDED
    assert reset.attempts == 2


def _record(deliveries: int = 6) -> DeadLettered:
    return DeadLettered(
        stream="offboard.requested",
        group="m365-worker",
        entry_id="1-0",
        reason="max_deliveries",
        detail="too many",
        deliveries=deliveries,
        data="{}",
    )


def test_deadlettered_offboard_marks_expected_steps_failed() -> None:
    event = offboard(actions=("reset_password", "block_sign_in"))
    result = handle_deadlettered(event, _record())
    assert result is not None
    assert result.request_id == event.request_id
    assert [s.action for s in result.steps] == ["block_sign_in", "reset_password"]
    for step in result.steps:
        assert step.outcome is Outcome.FAILED
        assert step.error is not None and step.error.code == "deadlettered"
        assert step.attempts == 6


def test_deadlettered_logout_names_revoke_sessions() -> None:
    result = handle_deadlettered(logout(), _record())
    assert result is not None
    assert [(s.action, s.outcome) for s in result.steps] == [("revoke_sessions", Outcome.FAILED)]
    assert handle_deadlettered(logout(targets=(Target.ENT,)), _record()) is None
    assert handle_deadlettered(ALICE, _record()) is None
