"""Identity resolution and read-back proof of the Microsoft 365 handlers, with the
in-memory directory (tests/m365/ runs the same rules through msgraph-sdk and the simulator)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sortie_core.errors import TransientError
from sortie_core.events import Outcome, Subject, Verification, utcnow
from sortie_core.metrics import REGISTRY
from sortie_core.steps import RetryPolicy
from sortie_m365.adapters.fake import FakeDirectory
from sortie_m365.handlers import IdentityConfig, handle_logout, handle_offboard
from sortie_m365.identity import Lookup
from sortie_m365.settings import M365Settings
from tests.support.workers import logout, offboard

POLICY = RetryPolicy(max_attempts=2, base_s=0.001, max_s=0.002, verify_delay_s=0.001)
DAVE = Subject(user_id="dave", cas_username="dave", windows_account="dave")
DAVE_UPN = "dave@example.org"


def config(*lookups: str, skew_s: float = 5) -> IdentityConfig:
    return IdentityConfig(
        lookups=tuple(Lookup.parse(t) for t in lookups), skew=timedelta(seconds=skew_s)
    )


@pytest.fixture
def directory() -> FakeDirectory:
    d = FakeDirectory(mail_protocols_supported=True)
    d.add(DAVE_UPN, id="da7e-id", mail=DAVE_UPN, employee_id="E1004", sam_account_name="dave")
    d.add("alice@example.org", id="a11ce-id", mail="alice.martin@example.org")
    return d


async def test_mapping_by_sam_account_name_resolves_dave(directory: FakeDirectory) -> None:
    identity = config("employeeId={user_id}", "onPremisesSamAccountName={user_id}")
    result = await handle_offboard(
        offboard(DAVE), directory=directory, policy=POLICY, identity=identity
    )
    assert [(s.action, s.outcome, s.verification) for s in result.steps] == [
        (a, Outcome.SUCCEEDED, Verification.VERIFIED)
        for a in ("block_sign_in", "reset_password", "revoke_sessions", "disable_mail_protocols")
    ]
    assert all(s.done for s in result.steps)
    assert directory.lookups == ["employeeId=dave", "onPremisesSamAccountName=dave"]
    assert directory.users[DAVE_UPN].enabled is False
    assert result.discovery is not None
    assert result.discovery.identity == f"{DAVE_UPN} (da7e-id)"
    assert result.discovery.identity_tried == (
        "employeeId=dave: no user",
        "onPremisesSamAccountName=dave: found",
    )


async def test_upn_template_resolves_and_missing_fields_are_not_tried(
    directory: FakeDirectory,
) -> None:
    identity = config("mail={upn}", "upn={cas_username}@example.org")
    result = await handle_logout(
        logout(DAVE), directory=directory, policy=POLICY, identity=identity
    )
    assert result is not None and result.steps[0].done
    # `{upn}` is unknown for this subject: that lookup is left out, not tried empty.
    assert directory.lookups == [DAVE_UPN]


async def test_a_mail_that_is_not_the_upn_is_found_by_filter(directory: FakeDirectory) -> None:
    subject = Subject(user_id="alice", upn="alice.martin@example.org")
    result = await handle_logout(logout(subject), directory=directory, policy=POLICY)
    assert result is not None and result.steps[0].done
    assert directory.lookups == ["alice.martin@example.org", "mail=alice.martin@example.org"]
    assert directory.calls == [("revoke_sessions", "a11ce-id")]


async def test_an_object_id_resolves_by_path(directory: FakeDirectory) -> None:
    result = await handle_logout(
        logout(Subject(user_id="x", upn="a11ce-id")), directory=directory, policy=POLICY
    )
    assert result is not None and result.steps[0].done
    assert directory.lookups == ["a11ce-id"]  # no mail filter for something not an address


async def test_two_matches_are_unresolved_not_a_guess(directory: FakeDirectory) -> None:
    directory.add("dave2@example.org", sam_account_name="dave")
    result = await handle_offboard(
        offboard(DAVE),
        directory=directory,
        policy=POLICY,
        identity=config("onPremisesSamAccountName={user_id}"),
    )
    assert {s.outcome for s in result.steps} == {Outcome.FAILED}
    error = result.steps[0].error
    assert error is not None and error.code == "identity_unresolved"
    assert "several Microsoft 365 users match onPremisesSamAccountName=dave" in error.message
    assert directory.calls == []


async def test_unknown_by_every_mapping_is_not_found_with_evidence(
    directory: FakeDirectory,
) -> None:
    identity = config("employeeId={user_id}", "upn={user_id}@school.example")
    result = await handle_offboard(
        offboard(Subject(user_id="zoe")), directory=directory, policy=POLICY, identity=identity
    )
    assert {(s.outcome, s.verification) for s in result.steps} == {
        (Outcome.NOT_FOUND, Verification.VERIFIED)
    }
    evidence = result.steps[0].evidence
    assert evidence is not None
    assert evidence.observed["tried"] == (
        "employeeId=zoe: no user; upn=zoe@school.example: no user"
    )
    assert evidence.read_at <= utcnow()


async def test_a_failed_lookup_is_not_an_authoritative_not_found(
    directory: FakeDirectory,
) -> None:
    directory.fail("find_users", *[TransientError("down", code="graph_unavailable")] * 2)
    result = await handle_offboard(
        offboard(Subject(user_id="zoe")),
        directory=directory,
        policy=POLICY,
        identity=config("employeeId={user_id}"),
    )
    assert {s.outcome for s in result.steps} == {Outcome.FAILED}
    assert result.steps[0].error is not None and result.steps[0].error.retryable


@pytest.mark.parametrize(
    ("drop", "action", "observed"),
    [
        ("accountEnabled", "block_sign_in", "accountEnabled"),
        ("passwordProfile", "reset_password", "lastPasswordChangeDateTime"),
        ("revokeSignInSessions", "revoke_sessions", "signInSessionsValidFromDateTime"),
        ("Set-CASMailbox", "disable_mail_protocols", "OWAEnabled"),
    ],
)
async def test_a_write_accepted_and_not_applied_is_contradicted(
    directory: FakeDirectory, drop: str, action: str, observed: str
) -> None:
    directory.drop.add(drop)
    result = await handle_offboard(
        offboard(Subject(user_id="dave", upn=DAVE_UPN)), directory=directory, policy=POLICY
    )
    steps = {s.action: s for s in result.steps}
    lied = steps.pop(action)
    assert (lied.outcome, lied.verification) == (Outcome.FAILED, Verification.CONTRADICTED)
    assert lied.error is not None and lied.error.code == "not_verified"
    assert lied.evidence is not None and observed in lied.evidence.observed
    # Read back a few times (directories are eventually consistent), then given up; the
    # state block_sign_in and disable_mail_protocols change is read once before (recorded).
    assert len(directory.reads) == 2 + 3 + POLICY.verify_attempts
    # The other steps are still proven.
    assert all(s.done for s in steps.values())


async def test_timestamps_within_the_skew_are_accepted_older_ones_are_not(
    directory: FakeDirectory,
) -> None:
    event = logout(Subject(user_id="dave", upn=DAVE_UPN))
    directory.drop.add("revokeSignInSessions")
    user = directory.users[DAVE_UPN]
    user.sessions_valid_from = event.occurred_at - timedelta(seconds=3)
    near = await handle_logout(event, directory=directory, policy=POLICY, identity=config())
    assert near is not None and near.steps[0].verification is Verification.VERIFIED
    strict = await handle_logout(
        event, directory=directory, policy=POLICY, identity=config(skew_s=1)
    )
    assert strict is not None
    assert strict.steps[0].verification is Verification.CONTRADICTED
    assert strict.steps[0].evidence is not None
    assert "required_at_least" in strict.steps[0].evidence.observed


async def test_a_read_back_that_fails_leaves_the_step_unproven(directory: FakeDirectory) -> None:
    directory.fail("read_user", *[TransientError("down", code="graph_unavailable")] * 4)
    result = await handle_logout(
        logout(Subject(user_id="dave", upn=DAVE_UPN)), directory=directory, policy=POLICY
    )
    assert result is not None
    [step] = result.steps
    assert (step.outcome, step.verification) == (Outcome.SUCCEEDED, Verification.UNVERIFIED)
    assert not step.done


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("employeeId", "not `property=template`"),
        ("displayName={user_id}", "use one of"),
        ("mail={uid}@x", "placeholders are"),
        ("mail={user_id!r}", "placeholders are"),
    ],
)
def test_bad_lookups_are_refused_at_start(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Lookup.parse(text)
    with pytest.raises(ValueError, match=message):
        M365Settings(identity_lookups=text)


def test_lookups_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "SORTIE_M365_IDENTITY_LOOKUPS",
        "onPremisesSamAccountName={user_id}, userPrincipalName={user_id}@school.example",
    )
    assert M365Settings().lookups == (
        Lookup("onPremisesSamAccountName", "{user_id}"),
        Lookup("userPrincipalName", "{user_id}@school.example"),
    )
    monkeypatch.setenv("SORTIE_M365_IDENTITY_LOOKUPS", '["employeeId={user_id}"]')
    assert M365Settings().lookups == (Lookup("employeeId", "{user_id}"),)
    monkeypatch.delenv("SORTIE_M365_IDENTITY_LOOKUPS")
    assert M365Settings().lookups == ()


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_unresolved_and_unknown_steps_are_counted_in_the_metrics(
    directory: FakeDirectory,
) -> None:
    failed = {"service": "m365", "action": "block_sign_in", "outcome": "failed"}
    verified = {"service": "m365", "result": "verified"}
    before = _sample("sortie_revocation_duration_seconds_count", **failed)
    proofs = _sample("sortie_verification_total", **verified)
    await handle_offboard(offboard(DAVE), directory=directory, policy=POLICY)
    assert _sample("sortie_revocation_duration_seconds_count", **failed) == before + 1
    await handle_logout(
        logout(Subject(user_id="zoe", upn="zoe@example.org")), directory=directory, policy=POLICY
    )
    # The authoritative not_found is a verification like a read-back.
    assert _sample("sortie_verification_total", **verified) == proofs + 1
