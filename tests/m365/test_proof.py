"""The handlers through msgraph-sdk against the Graph simulator over HTTP: identity from a
configured mapping, authoritative not_found, and each step read back from Graph (and
Exchange), including a Graph that accepts writes and does not apply them."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from sortie_core.events import FollowUpScope, Outcome, Subject, Verification, utcnow
from sortie_core.steps import RetryPolicy
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory
from sortie_m365.handlers import IdentityConfig, handle_logout, handle_offboard
from sortie_m365.identity import Lookup
from tests.m365.conftest import GraphSim
from tests.support.workers import logout, offboard

POLICY = RetryPolicy(max_attempts=2, base_s=0.001, max_s=0.002, verify_delay_s=0.01)
DAVE = Subject(user_id="dave", cas_username="dave")
DAVE_UPN = "dave@example.org"
MAPPING = IdentityConfig(
    lookups=(
        Lookup.parse("employeeId={user_id}"),
        Lookup.parse("onPremisesSamAccountName={user_id}"),
    )
)


@pytest.fixture
def dave(graph_sim: GraphSim) -> str:
    user = graph_sim.sim.add_user(
        DAVE_UPN,
        mail=DAVE_UPN,
        employee_id="E1004",
        on_premises_sam_account_name="dave",
        created_at=utcnow() - timedelta(days=1),
    )
    return user.id


async def test_mapping_resolves_dave_and_every_step_is_verified(
    graph_sim: GraphSim, directory: GraphSdkDirectory, dave: str
) -> None:
    result = await handle_offboard(
        offboard(DAVE), directory=directory, policy=POLICY, identity=MAPPING
    )
    assert [(s.action, s.outcome, s.verification) for s in result.steps] == [
        (a, Outcome.SUCCEEDED, Verification.VERIFIED)
        for a in ("block_sign_in", "reset_password", "revoke_sessions", "disable_mail_protocols")
    ]
    steps = {s.action: s for s in result.steps}
    for step in result.steps:
        assert step.evidence is not None and step.evidence.read_at >= step.started_at
    assert steps["block_sign_in"].evidence.observed == {"accountEnabled": False}  # type: ignore[union-attr]
    assert steps["disable_mail_protocols"].evidence.source.startswith("exchange")  # type: ignore[union-attr]
    assert result.discovery is not None
    assert result.discovery.identity == f"{DAVE_UPN} ({dave})"
    assert result.discovery.identity_tried == (
        "employeeId=dave: no user",
        "onPremisesSamAccountName=dave: found",
    )
    state = graph_sim.sim.users[dave]
    assert state.account_enabled is False and state.revocation_count == 1


async def test_without_mapping_dave_is_unresolved(
    graph_sim: GraphSim, directory: GraphSdkDirectory, dave: str
) -> None:
    result = await handle_offboard(offboard(DAVE), directory=directory, policy=POLICY)
    assert {(s.outcome, s.error.code if s.error else None) for s in result.steps} == {
        (Outcome.FAILED, "identity_unresolved")
    }
    assert graph_sim.sim.users[dave].account_enabled is True
    assert graph_sim.sim.stats.requests == 0  # nothing to ask Graph


async def test_unknown_to_graph_by_every_identifier_is_not_found_with_evidence(
    graph_sim: GraphSim, directory: GraphSdkDirectory
) -> None:
    ghost = Subject(user_id="ghost", upn="ghost@example.org")
    result = await handle_logout(
        logout(ghost), directory=directory, policy=POLICY, identity=MAPPING
    )
    assert result is not None
    [step] = result.steps
    assert (step.outcome, step.verification) == (Outcome.NOT_FOUND, Verification.VERIFIED)
    assert step.evidence is not None
    assert step.evidence.observed["tried"] == (
        "upn=ghost@example.org: no user; mail=ghost@example.org: no user; "
        "employeeId=ghost: no user; onPremisesSamAccountName=ghost: no user"
    )
    assert graph_sim.sim.stats.requests == 4


@pytest.mark.parametrize(
    ("drop", "action"),
    [
        ("accountEnabled", "block_sign_in"),
        ("passwordProfile", "reset_password"),
        ("revokeSignInSessions", "revoke_sessions"),
        ("Set-CASMailbox", "disable_mail_protocols"),
    ],
)
async def test_a_graph_that_lies_is_caught_by_the_read_back(
    graph_sim: GraphSim, directory: GraphSdkDirectory, dave: str, drop: str, action: str
) -> None:
    graph_sim.sim.dropped_writes = frozenset({drop})
    result = await handle_offboard(
        offboard(DAVE), directory=directory, policy=POLICY, identity=MAPPING
    )
    steps = {s.action: s for s in result.steps}
    lied = steps.pop(action)
    assert (lied.outcome, lied.verification) == (Outcome.FAILED, Verification.CONTRADICTED)
    assert lied.error is not None and lied.error.code == "not_verified"
    assert lied.evidence is not None and lied.evidence.observed
    assert not lied.done
    assert all(s.done for s in steps.values())
    assert graph_sim.sim.stats.dropped == 1


async def test_a_follow_up_of_work_already_done_reads_it_back_and_writes_nothing(
    graph_sim: GraphSim, directory: GraphSdkDirectory, dave: str
) -> None:
    """A follow-up sent while the first command still waited in a backlog: when it runs,
    the first one has done everything. Read back, proven, and no Graph write again."""
    first = offboard(DAVE)
    await handle_offboard(first, directory=directory, policy=POLICY, identity=MAPPING)
    writes = graph_sim.sim.stats.writes
    again = first.model_copy(
        update={"followup": FollowUpScope(services=("m365",)), "event_id": uuid.uuid4()}
    )
    result = await handle_offboard(again, directory=directory, policy=POLICY, identity=MAPPING)
    assert [(s.outcome, s.verification, s.attempts) for s in result.steps] == [
        (Outcome.SUCCEEDED, Verification.VERIFIED, 0)
    ] * 4
    assert all(s.evidence is not None for s in result.steps)
    assert graph_sim.sim.stats.writes == writes
    assert graph_sim.sim.users[dave].revocation_count == 1


async def test_a_follow_up_still_acts_when_the_work_is_not_done(
    graph_sim: GraphSim, directory: GraphSdkDirectory, dave: str
) -> None:
    again = offboard(DAVE).model_copy(update={"followup": FollowUpScope(services=("m365",))})
    result = await handle_offboard(again, directory=directory, policy=POLICY, identity=MAPPING)
    assert all(s.attempts >= 1 and s.done for s in result.steps)
    assert graph_sim.sim.users[dave].revocation_count == 1
