"""Issue 18's contract: recorded prior state, profiles' options, the reversal command, the
actions a reversal is expected to report, and the sealing of a Temporary Access Pass."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sortie_core import sealed
from sortie_core.events import (
    Kind,
    OffboardRequested,
    ReversalRequested,
    RevocationCompleted,
    StepResult,
    Subject,
    decode_event,
)
from sortie_core.records import RECORD_MAX_CHARS
from sortie_core.services import (
    OFFBOARD_ACTIONS,
    expected_actions,
    m365_offboard_actions,
    m365_reversal_actions,
)

NOW = datetime.now(UTC)


def step(**extra: object) -> StepResult:
    return StepResult(
        action="remove_licenses", outcome="succeeded", started_at=NOW, finished_at=NOW, **extra
    )


def test_recorded_round_trips_on_a_report() -> None:
    recorded = {"sku_ids": ["a", "b"], "disabled_plans": {"a": ["p1"]}, "n": 2, "x": None}
    report = RevocationCompleted(
        request_id=uuid.uuid4(),
        subject=Subject(user_id="alice"),
        service="m365",
        steps=(step(recorded=recorded, sealed="blob"),),
    )
    back = decode_event(report.model_dump_json())
    assert isinstance(back, RevocationCompleted)
    assert back.steps[0].recorded == recorded
    assert back.steps[0].sealed == "blob"
    assert "blob" not in repr(back.steps[0])


def test_recorded_is_bounded() -> None:
    with pytest.raises(ValidationError, match="characters of JSON"):
        step(recorded={"big": "x" * RECORD_MAX_CHARS})


def test_offboard_profile_phase_and_options() -> None:
    event = OffboardRequested(
        request_id=uuid.uuid4(),
        subject=Subject(user_id="bob"),
        deadline=NOW + timedelta(minutes=1),
        profile="staff-leaves",
        phase=1,
        actions=("remove_licenses", "app_logout", "block_sign_in"),
        options={"set_auto_reply": {"message": "Parti"}},
    )
    back = decode_event(event.model_dump_json())
    assert isinstance(back, OffboardRequested)
    assert (back.profile, back.phase, back.options) == (
        "staff-leaves",
        1,
        {"set_auto_reply": {"message": "Parti"}},
    )
    # named actions in the order given; none: the default four
    assert m365_offboard_actions(back.actions) == ["remove_licenses", "block_sign_in"]
    assert expected_actions(Kind.OFFBOARD, "m365", []) == [
        "block_sign_in",
        "reset_password",
        "revoke_sessions",
        "disable_mail_protocols",
    ]
    assert {"remove_licenses", "delegate_mailbox"} <= OFFBOARD_ACTIONS


def test_reversal_command_and_expected_actions() -> None:
    restore = {"block_sign_in": {"account_enabled": True}, "remove_licenses": {"sku_ids": []}}
    event = ReversalRequested(
        request_id=uuid.uuid4(),
        subject=Subject(user_id="carol"),
        reverses=uuid.uuid4(),
        restore=restore,
        tap_public_key=sealed.new_keypair()[1],
        deadline=NOW + timedelta(minutes=1),
    )
    back = decode_event(event.model_dump_json())
    assert isinstance(back, ReversalRequested)
    assert back.restore == restore
    actions = m365_reversal_actions(back.restore, back.issue_temporary_access_pass)
    assert actions == ["restore_block_sign_in", "restore_licenses", "issue_temporary_access_pass"]
    assert expected_actions(Kind.REVERSAL, "m365", [*actions, "app_logout"]) == actions
    assert expected_actions(Kind.REVERSAL, "sso", actions) == []
    assert "restore_reset_password" not in m365_reversal_actions({"reset_password": {}}, False)


def test_seal_and_unseal() -> None:
    private, public = sealed.new_keypair()
    blob = sealed.seal(public, "TAP-secret-123")
    assert "TAP-secret-123" not in blob
    assert sealed.unseal(private, blob) == "TAP-secret-123"
    # each sealing is fresh (an ephemeral key and nonce)
    assert sealed.seal(public, "TAP-secret-123") != blob


def test_unseal_refuses_tampering_and_other_keys() -> None:
    private, public = sealed.new_keypair()
    blob = sealed.seal(public, "TAP-secret-123")
    other_private, _ = sealed.new_keypair()
    with pytest.raises(ValueError):
        sealed.unseal(other_private, blob)
    flipped = blob[:-2] + ("A" if blob[-2] != "A" else "B") + blob[-1]
    with pytest.raises(ValueError):
        sealed.unseal(private, flipped)
    with pytest.raises(ValueError):
        sealed.unseal(private, "short")
    with pytest.raises(ValueError):
        sealed.seal("not-a-key", "x")
