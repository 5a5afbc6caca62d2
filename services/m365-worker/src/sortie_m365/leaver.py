"""The rest of Microsoft's leaver procedure, run when a request (its profile) names it:
licences, groups, authentication methods, devices (here) and the mailbox (leaver_mailbox.py).

Each action reads the state it is about to change once, on its first attempt, and keeps it
as the step's `recorded` (what a reversal restores); then changes it, and its read-back
checks the post-condition in Microsoft 365 itself:

- remove_licenses: `POST assignLicense` (removeLicenses); verified when `assignedLicenses`
  reads empty;
- remove_group_memberships: `DELETE /groups/{g}/members|owners/{id}/$ref`; verified when
  `memberOf` and `ownedObjects` hold none of the recorded groups;
- remove_auth_methods: `DELETE …/authentication/{kind}Methods/{m}` for every method but the
  password and the kinds the options keep; verified when no other is listed;
- disable_devices: `PATCH /devices/{d}` accountEnabled false (or `DELETE`, option
  `mode: delete`); verified when each device reads disabled (or 404).
"""

from __future__ import annotations

from typing import Any

from sortie_core.events import (
    Evidence,
    M365Action,
    OffboardRequested,
    SkipReason,
    StepResult,
)
from sortie_core.steps import Contradicted, RetryPolicy, StepSkipped, run_step

from . import leaver_mailbox, leaver_onedrive  # noqa: F401  (register their actions)
from .adapters import M365Directory, M365User
from .adapters.graph_leaver import METHOD_KINDS
from .identity import SERVICE
from .leaver_plan import (
    PLANNERS,
    LeaverOps,
    Plan,
    evidence,
    graph_of,
    none_left,
    planner,
    with_record,
)


async def prior_state(directory: M365Directory, action: M365Action, user: M365User) -> Any:
    """What block_sign_in and disable_mail_protocols are about to change, or None when it
    cannot be read (the step runs all the same: closing the door comes first)."""
    try:
        if action is M365Action.BLOCK_SIGN_IN:
            found = (await directory.read_user(user.id, ["accountEnabled"])).get("accountEnabled")
            return {"account_enabled": found} if isinstance(found, bool) else None
        if action is M365Action.DISABLE_MAIL_PROTOCOLS:
            return {"protocols": await directory.read_mail_protocols(user.upn)}
    except Exception:  # any failure: the step itself reports it
        return None
    return None


async def run(
    ops: LeaverOps,
    action: M365Action,
    user: M365User,
    event: OffboardRequested,
    policy: RetryPolicy,
) -> StepResult:
    plan = PLANNERS[action](ops, user, dict(event.options.get(action.value, {})))
    step = await run_step(SERVICE, action.value, plan.body, policy, verify=plan.verify)
    return with_record(step, plan.record)


# -- licences (user-assignlicense; read back: user.assignedLicenses) ----------------------
@planner(M365Action.REMOVE_LICENSES)
def _licenses(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    plan = Plan()

    async def body() -> str | None:
        graph = graph_of(ops)
        held = await graph.licenses(user.id)
        if not plan.record:
            plan.record.update(
                sku_ids=[x["skuId"] for x in held],
                disabled_plans={x["skuId"]: list(x.get("disabledPlans") or []) for x in held},
            )
        if held:
            await graph.assign_licenses(user.id, [], [x["skuId"] for x in held])
        return f"{len(plan.record['sku_ids'])} licence(s) removed"

    async def verify() -> Evidence:
        left = await graph_of(ops).licenses(user.id)
        proof = evidence("graph GET /users/{id}?$select=assignedLicenses", assigned=len(left))
        return none_left(left, proof, f"Graph still reads {len(left)} licence(s) assigned")

    return plan.set(body, verify)


# -- groups (user-list-memberof, user-list-ownedobjects, group-delete-members/owners) -----
@planner(M365Action.REMOVE_GROUP_MEMBERSHIPS)
def _groups(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    keep = {str(g) for g in options.get("keep", []) or []}
    plan = Plan()

    async def body() -> str | None:
        graph = graph_of(ops)
        # Read on every attempt: a retry removes only what is left.
        groups = [g for g in await graph.groups(user.id) if g not in keep]
        owned = [g for g in await graph.owned_groups(user.id) if g not in keep]
        if not plan.record:
            plan.record.update(group_ids=groups, owned_group_ids=owned)
        for group in owned:
            await graph.set_membership(group, user.id, owner=True, present=False)
        for group in groups:
            await graph.set_membership(group, user.id, owner=False, present=False)
        return (
            f"removed from {len(plan.record['group_ids'])} group(s), "
            f"owner of {len(plan.record['owned_group_ids'])} no more"
        )

    async def verify() -> Evidence:
        graph = graph_of(ops)
        member = set(await graph.groups(user.id)) & set(plan.record["group_ids"])
        owner = set(await graph.owned_groups(user.id)) & set(plan.record["owned_group_ids"])
        proof = evidence(
            "graph GET /users/{id}/memberOf, /ownedObjects",
            still_member=len(member),
            still_owner=len(owner),
        )
        if member or owner:
            raise Contradicted("Graph still reads recorded memberships", proof)
        return proof

    return plan.set(body, verify)


# -- authentication methods (authentication-list-methods, *authenticationmethod-delete) ---
_PASSWORD = "#microsoft.graph.passwordAuthenticationMethod"


@planner(M365Action.REMOVE_AUTH_METHODS)
def _auth_methods(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    keep = {str(k) for k in options.get("keep", []) or []}
    plan = Plan()

    def removable(method: dict[str, Any]) -> bool:
        kind = METHOD_KINDS.get(str(method.get("@odata.type")))
        return kind is not None and kind not in keep and method.get("@odata.type") != _PASSWORD

    async def body() -> str | None:
        graph = graph_of(ops)
        found = [m for m in await graph.auth_methods(user.id) if removable(m)]
        if not plan.record:
            # Kinds and ids only: never a phone number, an address or a key.
            plan.record["removed"] = [
                {"kind": METHOD_KINDS[m["@odata.type"]], "id": m["id"]} for m in found
            ]
            plan.record["not_restorable"] = True
        for method in found:
            await graph.delete_auth_method(user.id, method["@odata.type"], method["id"])
        return f"{len(plan.record['removed'])} method(s) removed; kept: {sorted(keep) or 'none'}"

    async def verify() -> Evidence:
        left = [m for m in await graph_of(ops).auth_methods(user.id) if removable(m)]
        proof = evidence("graph GET /users/{id}/authentication/methods", removable_left=len(left))
        return none_left(left, proof, f"Graph still reads {len(left)} removable method(s)")

    return plan.set(body, verify)


# -- devices (user-list-registereddevices, device-update, device-delete) ----------------
@planner(M365Action.DISABLE_DEVICES)
def _devices(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    mode = options.get("mode", "disable")
    plan = Plan()

    async def body() -> str | None:
        if mode not in ("disable", "delete"):
            raise StepSkipped(f"unknown mode {str(mode)[:40]!r}", SkipReason.NOT_CONFIGURED)
        graph = graph_of(ops)
        if not plan.record:
            found = await graph.devices(user.id)
            plan.record["mode"] = mode
            plan.record["devices"] = [
                {"id": d["id"], "account_enabled": d.get("accountEnabled") is not False}
                for d in found
            ]
        for device in plan.record["devices"]:
            current = await graph.device(device["id"])
            if current is not None and (mode == "delete" or current.get("accountEnabled")):
                await graph.set_device(device["id"], enabled=None if mode == "delete" else False)
        return f"{len(plan.record['devices'])} device(s) {mode}d"

    async def verify() -> Evidence:
        graph = graph_of(ops)
        wrong = 0
        for device in plan.record["devices"]:
            current = await graph.device(device["id"])
            if current is not None and (mode == "delete" or current.get("accountEnabled")):
                wrong += 1
        proof = evidence(
            "graph GET /devices/{id}", devices=len(plan.record["devices"]), wrong=wrong
        )
        if wrong:
            raise Contradicted(f"{wrong} device(s) not {mode}d", proof)
        return proof

    return plan.set(body, verify)


ACTIONS = frozenset(PLANNERS)
MAILBOX_ACTIONS = (
    M365Action.SET_AUTO_REPLY,
    M365Action.CONVERT_TO_SHARED_MAILBOX,
    M365Action.HIDE_FROM_ADDRESS_LISTS,
    M365Action.DELEGATE_MAILBOX,
)
