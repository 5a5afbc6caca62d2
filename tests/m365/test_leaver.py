"""The leaver actions and their reversal through the real msgraph-sdk against the Graph
simulator over HTTP: each change read back from Graph (and Exchange), the prior state
recorded, a reversal restoring it exactly, 403s naming the permission, and the Temporary
Access Pass sealed to the requester's key."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sortie_core import sealed
from sortie_core.events import (
    DeadLettered,
    Outcome,
    ReversalRequested,
    StepResult,
    Subject,
    Verification,
    utcnow,
)
from sortie_core.steps import RetryPolicy
from sortie_m365.adapters.graph_sdk import GraphSdkDirectory
from sortie_m365.bootstrap import leaver_ops
from sortie_m365.handlers import handle_deadlettered, handle_offboard
from sortie_m365.reversal import handle_reversal
from sortie_simulators.graph_drive import Grant, drive_of
from sortie_simulators.graph_leaver import app_token
from tests.m365.conftest import ALICE, GraphSim, make_directory, make_mailbox
from tests.support.workers import offboard

POLICY = RetryPolicy(max_attempts=2, base_s=0.001, max_s=0.002, verify_delay_s=0.01)
ALICE_ID = "0a11ce00-0000-4000-8000-000000000001"
BOB = "bob.manager@example.org"
SKU_E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
SKU_TEAMS = "4b590615-0888-425a-a965-b3bf7789848d"
PLAN = "efb87545-963c-4e0d-99df-69c6916d9eb0"
EVERYTHING = (
    "block_sign_in",
    "disable_mail_protocols",
    "remove_licenses",
    "remove_group_memberships",
    "remove_auth_methods",
    "disable_devices",
    "set_auto_reply",
    "convert_to_shared_mailbox",
    "hide_from_address_lists",
    "delegate_mailbox",
    "delegate_onedrive",
)
OPTIONS: dict[str, dict[str, Any]] = {
    "remove_auth_methods": {"keep": ["fido2"]},
    "set_auto_reply": {"message": "Alice a quitté l'établissement."},
    "delegate_mailbox": {"to": "manager", "forward": True, "full_access": True},
    "delegate_onedrive": {"to": "manager", "role": "write"},
}


@pytest.fixture
def tenant(graph_sim: GraphSim) -> GraphSim:
    """Alice holds two licences (one with a plan off), is member of two groups and owner
    of one, has four methods, two devices, a manager and automatic replies off."""
    sim, t = graph_sim.sim, graph_sim.sim.tenant
    bob = sim.add_user(BOB, mail=BOB)
    t.skus |= {SKU_E3, SKU_TEAMS}
    t.licenses[ALICE_ID] = [
        {"disabledPlans": [PLAN], "skuId": SKU_E3},
        {"disabledPlans": [], "skuId": SKU_TEAMS},
    ]
    t.add_group("staff", members=(ALICE_ID, bob.id))
    t.add_group("maths", members=(ALICE_ID,), owners=(ALICE_ID, bob.id))
    t.add_group("bob-only", members=(bob.id,))
    t.add_method(ALICE_ID, "passwordMethods")
    t.add_method(ALICE_ID, "fido2Methods", displayName="key")
    t.add_method(ALICE_ID, "phoneMethods", phoneNumber="+33 6 00 00 00 00", phoneType="mobile")
    t.add_method(ALICE_ID, "microsoftAuthenticatorMethods", displayName="phone")
    t.add_device(ALICE_ID, "alice-laptop")
    t.add_device(ALICE_ID, "alice-phone")
    t.managers[ALICE_ID] = bob.id
    return graph_sim


def snapshot(graph_sim: GraphSim) -> dict[str, Any]:
    sim, t = graph_sim.sim, graph_sim.sim.tenant
    box = t.mailboxes.get(ALICE_ID)
    return {
        "enabled": sim.users[ALICE_ID].account_enabled,
        "protocols": dict(sim.users[ALICE_ID].cas_mailbox),
        "licenses": sorted(map(str, t.licenses.get(ALICE_ID, []))),
        "member": sorted(g.display_name for g in t.groups.values() if ALICE_ID in g.members),
        "owner": sorted(g.display_name for g in t.groups.values() if ALICE_ID in g.owners),
        "devices": sorted((d.display_name, d.account_enabled) for d in t.devices.values()),
        "auto_reply": dict(t.auto_reply(ALICE_ID)),
        "mailbox": (box.recipient_type, box.hidden, box.forwarding, sorted(box.full_access))
        if box
        else ("UserMailbox", False, None, []),
        "onedrive": onedrive(graph_sim),
    }


def onedrive(graph_sim: GraphSim) -> list[tuple[str, tuple[str, ...]]]:
    """Who holds what on Alice's OneDrive (the owner included)."""
    drive = drive_of(graph_sim.sim.tenant, ALICE_ID)
    users = graph_sim.sim.users
    return sorted(
        (users[g.user].user_principal_name, tuple(g.roles)) for g in (drive.grants if drive else [])
    )


@pytest.fixture
async def full(tenant: GraphSim) -> AsyncIterator[GraphSdkDirectory]:
    d = make_directory(tenant.url, mailbox=make_mailbox(tenant.url))
    yield d
    await d.aclose()


def offboarding(actions: tuple[str, ...] = EVERYTHING, **options: dict[str, Any]) -> Any:
    event = offboard(Subject(user_id="alice", upn=ALICE), actions)
    return event.model_copy(update={"options": {**OPTIONS, **options}, "profile": "staff-leaves"})


def reversal_of(steps: tuple[StepResult, ...], public_key: str | None) -> ReversalRequested:
    return ReversalRequested(
        request_id=uuid.uuid4(),
        subject=Subject(user_id="alice", upn=ALICE),
        reverses=uuid.uuid4(),
        restore={s.action: s.recorded for s in steps if s.recorded is not None},
        tap_public_key=public_key,
        deadline=utcnow() + timedelta(seconds=30),
    )


async def test_each_action_is_read_back_and_records_the_prior_state(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    result = await handle_offboard(
        offboarding(), directory=full, policy=POLICY, ops=leaver_ops(full)
    )
    assert result is not None
    steps = {s.action: s for s in result.steps}
    for action in EVERYTHING:
        assert (steps[action].outcome, steps[action].verification) == (
            Outcome.SUCCEEDED,
            Verification.VERIFIED,
        ), (action, steps[action].error)
        assert steps[action].evidence is not None and steps[action].recorded, action
    assert steps["remove_licenses"].recorded == {
        "sku_ids": [SKU_E3, SKU_TEAMS],
        "disabled_plans": {SKU_E3: [PLAN], SKU_TEAMS: []},
    }
    groups = {g.display_name: g.id for g in tenant.sim.tenant.groups.values()}
    assert steps["remove_group_memberships"].recorded == {
        "group_ids": sorted([groups["staff"], groups["maths"]], key=list(groups.values()).index),
        "owned_group_ids": [groups["maths"]],
    }
    assert steps["convert_to_shared_mailbox"].recorded == {"mailbox_type": "UserMailbox"}
    assert steps["hide_from_address_lists"].recorded == {"hidden": False}
    # Never a phone number in what is kept.
    assert "+33" not in str(steps["remove_auth_methods"].recorded)
    now = snapshot(tenant)
    assert now["enabled"] is False and now["licenses"] == []
    assert now["member"] == [] and now["owner"] == []
    assert now["devices"] == [("alice-laptop", False), ("alice-phone", False)]
    assert now["auto_reply"]["status"] == "alwaysEnabled"
    assert now["mailbox"] == ("SharedMailbox", True, f"smtp:{BOB}", [BOB])
    assert now["onedrive"] == [(ALICE, ("owner",)), (BOB, ("write",))]
    bob_id = tenant.sim.find(BOB).id  # type: ignore[union-attr]
    drive = tenant.sim.tenant.drives[ALICE_ID]
    assert steps["delegate_onedrive"].recorded == {
        "drive": drive.id,
        "to": BOB,
        "to_id": bob_id,
        "role": "write",
        "prior_roles": None,
        "permission": drive.grants[1].id,
    }
    assert steps["delegate_onedrive"].evidence.observed == {"roles": "write"}  # type: ignore[union-attr]
    left = [m["@odata.type"] for m in tenant.sim.tenant.methods[ALICE_ID]]
    assert sorted(left) == [
        "#microsoft.graph.fido2AuthenticationMethod",
        "#microsoft.graph.passwordAuthenticationMethod",
    ]


async def test_a_reversal_restores_the_recorded_state_exactly_and_seals_a_pass(
    tenant: GraphSim, full: GraphSdkDirectory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = snapshot(tenant)
    ops = leaver_ops(full)
    done = await handle_offboard(offboarding(), directory=full, policy=POLICY, ops=ops)
    assert done is not None and snapshot(tenant) != before
    private, public = sealed.new_keypair()
    result = await handle_reversal(
        reversal_of(done.steps, public), directory=full, policy=POLICY, ops=ops
    )
    assert result is not None
    steps = {s.action: s for s in result.steps}
    assert "restore_reset_password" not in steps and "restore_remove_auth_methods" not in steps
    for name, step in steps.items():
        assert (step.outcome, step.verification) == (Outcome.SUCCEEDED, Verification.VERIFIED), (
            name,
            step.error,
        )
    assert snapshot(tenant) == before
    tap = steps["issue_temporary_access_pass"]
    [issued] = tenant.sim.tenant.issued_passes
    assert tap.sealed is not None and sealed.unseal(private, tap.sealed) == issued
    # The pass itself is nowhere but in the sealed blob.
    assert issued not in result.model_dump_json().replace(tap.sealed, "")
    assert issued not in caplog.text
    assert tap.evidence is not None and tap.evidence.observed["listed"] is True


async def test_a_deleted_device_is_not_restorable(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    ops = leaver_ops(full)
    event = offboarding(("disable_devices",), disable_devices={"mode": "delete"})
    done = await handle_offboard(event, directory=full, policy=POLICY, ops=ops)
    assert done is not None and tenant.sim.tenant.devices == {}
    result = await handle_reversal(
        reversal_of(done.steps, None).model_copy(update={"issue_temporary_access_pass": False}),
        directory=full,
        policy=POLICY,
        ops=ops,
    )
    assert result is not None
    [step] = result.steps
    assert step.action == "restore_devices" and step.outcome is Outcome.FAILED
    assert step.error is not None and step.error.code == "not_restorable"
    assert not step.error.retryable


async def test_a_missing_permission_fails_the_step_and_names_it(tenant: GraphSim) -> None:
    roles = ["User.Read.All", "User.EnableDisableAccount.All", "GroupMember.Read.All"]
    d = make_directory(tenant.url, token=app_token(roles))
    try:
        event = offboarding(("remove_group_memberships", "remove_licenses"))
        result = await handle_offboard(event, directory=d, policy=POLICY, ops=leaver_ops(d))
    finally:
        await d.aclose()
    assert result is not None
    steps = {s.action: s for s in result.steps}
    for action, permission in (
        ("remove_group_memberships", "Group.ReadWrite.All"),  # ownerships go first
        ("remove_licenses", "User.ReadWrite.All"),
    ):
        step = steps[action]
        assert step.outcome is Outcome.FAILED and step.error is not None
        assert (step.error.code, step.error.retryable) == ("graph_forbidden", False)
        assert permission in step.error.message
    now = snapshot(tenant)
    assert now["member"] == ["maths", "staff"] and len(now["licenses"]) == 2


async def test_without_exchange_the_mailbox_actions_are_skipped_by_policy(
    tenant: GraphSim,
) -> None:
    d = make_directory(tenant.url)
    try:
        event = offboarding(("convert_to_shared_mailbox", "hide_from_address_lists"))
        result = await handle_offboard(event, directory=d, policy=POLICY, ops=leaver_ops(d))
    finally:
        await d.aclose()
    assert result is not None
    mailbox = [s for s in result.steps if s.action.endswith(("mailbox", "lists"))]
    assert [(s.outcome, s.done) for s in mailbox] == [(Outcome.SKIPPED, True)] * 2


async def test_a_pass_without_a_key_is_never_issued(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    result = await handle_reversal(
        reversal_of((), None), directory=full, policy=POLICY, ops=leaver_ops(full)
    )
    assert result is not None
    [step] = result.steps
    assert step.outcome is Outcome.FAILED and step.error is not None
    assert step.error.code == "no_seal_key" and step.sealed is None
    assert tenant.sim.tenant.issued_passes == []


async def test_the_simulator_throttles_and_checks_roles_on_leaver_writes(tenant: GraphSim) -> None:
    tenant.sim.configure(throttle_writes_per_s=1)
    url = f"{tenant.url}/v1.0/users/{ALICE_ID}/assignLicense"
    body = {"addLicenses": [], "removeLicenses": [SKU_TEAMS]}
    async with httpx.AsyncClient() as client:
        weak = {"Authorization": f"Bearer {app_token(['User.Read.All'])}"}
        denied = await client.post(url, json=body, headers=weak)
        strong = {"Authorization": f"Bearer {app_token(['User.ReadWrite.All'])}"}
        first = await client.post(url, json=body, headers=strong)
        second = await client.post(url, json=body, headers=strong)
    assert denied.status_code == 403
    assert "User.ReadWrite.All" in denied.json()["error"]["message"]
    assert first.status_code == 200
    assert [x["skuId"] for x in first.json()["assignedLicenses"]] == [SKU_E3]
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1


def test_a_dead_lettered_reversal_reports_each_step_failed() -> None:
    event = reversal_of((), "key").model_copy(update={"restore": {"remove_licenses": {}}})
    record = DeadLettered(
        stream="reversal.requested", group="m365-worker", entry_id="1-0",
        reason="delivery_limit", detail="too many deliveries", deliveries=5, data="{}",
    )  # fmt: skip
    report = handle_deadlettered(event, record)
    assert report is not None
    assert [(s.action, s.outcome) for s in report.steps] == [
        ("restore_licenses", Outcome.FAILED),
        ("issue_temporary_access_pass", Outcome.FAILED),
    ]


async def test_token_roles_also_govern_the_user_writes(tenant: GraphSim) -> None:
    d = make_directory(tenant.url, token=app_token(["User.Read.All"]))
    try:
        event = offboarding(("block_sign_in",))
        result = await handle_offboard(event, directory=d, policy=POLICY, ops=leaver_ops(d))
    finally:
        await d.aclose()
    assert result is not None
    step = next(s for s in result.steps if s.action == "block_sign_in")
    assert step.outcome is Outcome.FAILED and step.error is not None
    assert step.error.code == "graph_forbidden"
    assert "User.EnableDisableAccount.All" in step.error.message
    # Read before the write: the prior state is still recorded.
    assert step.recorded == {"account_enabled": True}
    assert tenant.sim.users[ALICE_ID].account_enabled is True


async def test_a_throttled_step_records_the_state_before_its_first_attempt(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    tenant.sim.configure(throttle_writes_per_s=2)  # the third removal is answered 429
    policy = RetryPolicy(max_attempts=4, base_s=0.001, max_s=0.002, verify_delay_s=0.01)
    event = offboarding(("remove_group_memberships",))
    result = await handle_offboard(event, directory=full, policy=policy, ops=leaver_ops(full))
    assert result is not None
    [step] = [s for s in result.steps if s.action == "remove_group_memberships"]
    assert (step.outcome, step.verification, step.attempts) == (
        Outcome.SUCCEEDED,
        Verification.VERIFIED,
        2,
    )
    assert tenant.sim.stats.throttled >= 1
    assert step.recorded is not None
    assert len(step.recorded["group_ids"]) == 2 and len(step.recorded["owned_group_ids"]) == 1


async def test_onedrive_access_raised_is_lowered_back_and_one_given_is_taken_back(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    ops = leaver_ops(full)
    sim = tenant.sim
    carol = sim.add_user("carol@example.org", mail="carol@example.org")
    drive = drive_of(sim.tenant, ALICE_ID)
    assert drive is not None
    drive.grants.append(Grant("carol-read", carol.id, ["read"]))
    event = offboarding(("delegate_onedrive",), delegate_onedrive={"to": "carol@example.org"})
    done = await handle_offboard(event, directory=full, policy=POLICY, ops=ops)
    assert done is not None
    [step] = [s for s in done.steps if s.action == "delegate_onedrive"]
    assert (step.outcome, step.verification) == (Outcome.SUCCEEDED, Verification.VERIFIED)
    assert step.recorded is not None and step.recorded["prior_roles"] == ["read"]
    assert ("carol@example.org", ("write",)) in onedrive(tenant)
    # Manager (Bob) too, then both reversed: Carol reads again, Bob holds nothing.
    bob = await handle_offboard(offboarding(("delegate_onedrive",)), directory=full,
                                policy=POLICY, ops=ops)  # fmt: skip
    assert bob is not None
    assert (BOB, ("write",)) in onedrive(tenant)
    for original in (bob, done):
        back = await handle_reversal(
            reversal_of(original.steps, None).model_copy(
                update={"issue_temporary_access_pass": False}
            ),
            directory=full,
            policy=POLICY,
            ops=ops,
        )
        assert back is not None
        [restored] = back.steps
        assert restored.action == "restore_delegate_onedrive" and restored.done, restored
    assert onedrive(tenant) == [(ALICE, ("owner",)), ("carol@example.org", ("read",))]


async def test_a_user_without_onedrive_hands_nothing_over_and_the_permission_is_named(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    tenant.sim.tenant.no_drive.add(ALICE_ID)
    event = offboarding(("delegate_onedrive",))
    done = await handle_offboard(event, directory=full, policy=POLICY, ops=leaver_ops(full))
    assert done is not None
    [step] = [s for s in done.steps if s.action == "delegate_onedrive"]
    assert step.done and step.recorded is not None and step.recorded["drive"] is None
    assert step.evidence is not None and step.evidence.observed == {"drive": "none"}
    tenant.sim.tenant.no_drive.clear()
    weak = make_directory(tenant.url, token=app_token(["User.Read.All", "Files.Read.All"]))
    try:
        refused = await handle_offboard(event, directory=weak, policy=POLICY, ops=leaver_ops(weak))
    finally:
        await weak.aclose()
    assert refused is not None
    [step] = [s for s in refused.steps if s.action == "delegate_onedrive"]
    assert step.outcome is Outcome.FAILED and step.error is not None
    assert step.error.code == "graph_forbidden" and "Files.ReadWrite.All" in step.error.message
    assert onedrive(tenant) == [(ALICE, ("owner",))]


async def test_the_profile_s_actions_run_in_its_order_one_after_another(
    tenant: GraphSim, full: GraphSdkDirectory
) -> None:
    order = ("set_auto_reply", "remove_licenses", "delegate_onedrive", "disable_devices",
             "block_sign_in", "remove_group_memberships")  # fmt: skip
    sent = len(tenant.recorder.bodies)
    result = await handle_offboard(
        offboarding(order), directory=full, policy=POLICY, ops=leaver_ops(full)
    )
    assert result is not None
    ran = [s for s in result.steps if s.skip_reason is None]
    # The design's default actions first in their order, then the profile's, in its order.
    assert [s.action for s in ran] == ["block_sign_in", *(a for a in order if a != "block_sign_in")]
    for before, after in itertools.pairwise(ran):
        assert before.finished_at <= after.started_at, (before.action, after.action)
    # And Graph saw the writes in that order: the reply first, the device last.
    bodies = [b for b in tenant.recorder.json_bodies()[sent:] if isinstance(b, dict)]
    kinds = [next((k for k in b if not k.startswith("@odata.")), "") for b in bodies]
    assert kinds.index("accountEnabled") < kinds.index("automaticRepliesSetting")
    assert kinds.index("automaticRepliesSetting") < kinds.index("addLicenses")
    assert kinds.index("addLicenses") < kinds.index("recipients")
    assert kinds[-1] == "accountEnabled"  # the devices, before the groups' DELETEs


async def test_the_simulator_s_onedrive_answers_as_graph_does(tenant: GraphSim) -> None:
    """drive-get, driveitem-invite, driveitem-list-permissions, permission-delete."""
    tenant.sim.tenant.no_drive.add(tenant.sim.find(BOB).id)  # type: ignore[union-attr]
    full = {"Authorization": f"Bearer {app_token(['Files.ReadWrite.All'])}"}
    read = {"Authorization": f"Bearer {app_token(['Files.Read.All'])}"}
    async with httpx.AsyncClient(base_url=f"{tenant.url}/v1.0") as client:
        none = await client.get(f"/users/{BOB}/drive", headers=full)
        drive = (await client.get(f"/users/{ALICE}/drive", headers=read)).json()
        root = f"/drives/{drive['id']}/items/root"
        body = {"recipients": [{"email": BOB}], "roles": ["read"], "requireSignIn": True,
                "sendInvitation": False}  # fmt: skip
        denied = await client.post(f"{root}/invite", json=body, headers=read)
        stranger = await client.post(
            f"{root}/invite", json={**body, "recipients": [{"email": "x@elsewhere.example"}]},
            headers=full,
        )  # fmt: skip
        granted = await client.post(f"{root}/invite", json=body, headers=full)
        again = await client.post(f"{root}/invite", json={**body, "roles": ["write"]}, headers=full)
        listed = (await client.get(f"{root}/permissions", headers=read)).json()["value"]
        owner = next(p for p in listed if p["roles"] == ["owner"])
        kept = await client.delete(f"{root}/permissions/{owner['id']}", headers=full)
        perm = granted.json()["value"][0]
        gone = await client.delete(f"{root}/permissions/{perm['id']}", headers=full)
        twice = await client.delete(f"{root}/permissions/{perm['id']}", headers=full)
    assert (none.status_code, none.json()["error"]["code"]) == (404, "ResourceNotFound")
    assert drive["driveType"] == "business" and drive["id"].startswith("b!")
    assert denied.status_code == 403 and "Files.ReadWrite.All" in denied.text
    assert (stranger.status_code, stranger.json()["error"]["code"]) == (400, "invalidRequest")
    assert granted.status_code == 200 and perm["roles"] == ["read"]
    assert perm["grantedToV2"]["user"]["email"] == BOB and perm["invitation"]["signInRequired"]
    # The same person again: the same permission, its roles raised.
    assert again.json()["value"][0]["id"] == perm["id"]
    assert again.json()["value"][0]["roles"] == ["write"]
    assert len(listed) == 2 and kept.status_code == 403
    assert (gone.status_code, twice.status_code) == (204, 404)
