"""Reversal (`reversal.requested`): put back what an offboarding recorded, read it back,
and hand the user a way in that is not the old password, a Temporary Access Pass (tap.py).

Each `restore_<…>` step writes the recorded prior state and is verified when Microsoft 365
reads that state back exactly. What cannot be restored is reported so: a deleted device
(`failed`, `not_restorable`); removed authentication methods are not restored at all (the
pass is how the user registers them again); the password never is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sortie_core.errors import PermanentError
from sortie_core.events import (
    Evidence,
    M365Action,
    ReversalRequested,
    RevocationCompleted,
    StepResult,
)
from sortie_core.services import ISSUE_TEMPORARY_ACCESS_PASS, M365_RESTORE_ACTIONS
from sortie_core.steps import Contradicted, RetryPolicy, run_step

from .adapters import M365Directory, M365User
from .handlers import IdentityConfig, _unresolved, report
from .identity import SERVICE, resolve
from .leaver_onedrive import permission_of, roles_of
from .leaver_plan import LeaverOps, evidence, exchange_of, graph_of
from .tap import TapConfig, issue_pass

Body = Callable[[], Awaitable[str | None]]
Check = Callable[[], Awaitable[Evidence]]
Restorer = Callable[[LeaverOps, M365Directory, M365User, dict[str, Any]], tuple[Body, Check]]
RESTORERS: dict[str, Restorer] = {}


def restorer(action: M365Action) -> Callable[[Restorer], Restorer]:
    def register(fn: Restorer) -> Restorer:
        RESTORERS[action.value] = fn
        return fn

    return register


def _check(source: str, expected: Any, read: Callable[[], Awaitable[Any]]) -> Check:
    async def check() -> Evidence:
        found = await read()
        proof = evidence(source, restored=found == expected)
        if found != expected:
            raise Contradicted(f"{source} does not read the recorded state back", proof)
        return proof

    return check


def _unrestorable(why: str) -> PermanentError:
    return PermanentError(why, code="not_restorable")


@restorer(M365Action.BLOCK_SIGN_IN)
def _sign_in(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    enabled = rec.get("account_enabled", True) is not False

    async def body() -> str | None:
        await graph_of(ops).set_account_enabled(user.id, enabled)
        return None

    async def read() -> Any:
        return (await d.read_user(user.id, ["accountEnabled"])).get("accountEnabled")

    return body, _check("graph GET /users/{id}?$select=accountEnabled", enabled, read)


@restorer(M365Action.DISABLE_MAIL_PROTOCOLS)
def _protocols(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    switches = {str(k): v is True for k, v in (rec.get("protocols") or {}).items()}

    async def body() -> str | None:
        if not switches:
            raise _unrestorable("no protocol switches were recorded")
        await exchange_of(ops).set_protocols(user.upn, switches)
        return None

    async def read() -> Any:
        found = await d.read_mail_protocols(user.upn)
        return {k: found.get(k) for k in switches}

    return body, _check("exchange InvokeCommand Get-CASMailbox", switches, read)


def _license_set(items: list[dict[str, Any]]) -> set[tuple[str, tuple[str, ...]]]:
    return {(x["skuId"], tuple(sorted(x.get("disabledPlans") or []))) for x in items}


@restorer(M365Action.REMOVE_LICENSES)
def _licenses(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    plans = rec.get("disabled_plans") or {}
    wanted = [
        {"skuId": s, "disabledPlans": list(plans.get(s) or [])} for s in rec.get("sku_ids") or []
    ]

    async def body() -> str | None:
        graph = graph_of(ops)
        held = _license_set(await graph.licenses(user.id))
        missing = [x for x in wanted if (x["skuId"], tuple(sorted(x["disabledPlans"]))) not in held]
        if missing:
            await graph.assign_licenses(user.id, missing, [])
        return f"{len(wanted)} licence(s) assigned again"

    async def read() -> Any:
        return _license_set(await graph_of(ops).licenses(user.id)) >= _license_set(wanted)

    return body, _check("graph GET /users/{id}?$select=assignedLicenses", True, read)


@restorer(M365Action.REMOVE_GROUP_MEMBERSHIPS)
def _groups(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    groups = [str(g) for g in rec.get("group_ids") or []]
    owned = [str(g) for g in rec.get("owned_group_ids") or []]

    async def body() -> str | None:
        graph = graph_of(ops)
        member, owner = set(await graph.groups(user.id)), set(await graph.owned_groups(user.id))
        for group in (g for g in groups if g not in member):
            await graph.set_membership(group, user.id, owner=False, present=True)
        for group in (g for g in owned if g not in owner):
            await graph.set_membership(group, user.id, owner=True, present=True)
        return f"member of {len(groups)} group(s), owner of {len(owned)} again"

    async def read() -> Any:
        graph = graph_of(ops)
        member, owner = set(await graph.groups(user.id)), set(await graph.owned_groups(user.id))
        return member >= set(groups) and owner >= set(owned)

    return body, _check("graph GET /users/{id}/memberOf, /ownedObjects", True, read)


@restorer(M365Action.DISABLE_DEVICES)
def _devices(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    devices = [x for x in rec.get("devices") or [] if isinstance(x, dict)]

    async def body() -> str | None:
        if rec.get("mode") == "delete" and devices:
            raise _unrestorable(f"{len(devices)} device(s) were deleted: they register again")
        graph = graph_of(ops)
        for device in devices:
            if await graph.device(device["id"]) is None:
                raise _unrestorable("a recorded device no longer exists")
            await graph.set_device(device["id"], enabled=device.get("account_enabled") is not False)
        return f"{len(devices)} device(s) restored"

    async def read() -> Any:
        graph = graph_of(ops)
        found = [await graph.device(x["id"]) or {} for x in devices]
        return [f.get("accountEnabled") for f in found]

    expected = [x.get("account_enabled") is not False for x in devices]
    return body, _check("graph GET /devices/{id}", expected, read)


@restorer(M365Action.SET_AUTO_REPLY)
def _auto_reply(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    prior = {k: v for k, v in (rec.get("auto_reply") or {}).items() if not k.startswith("@")}
    keys = ("status", "externalAudience", "internalReplyMessage", "externalReplyMessage")
    expected = {k: prior.get(k) for k in keys if k in prior}

    async def body() -> str | None:
        await graph_of(ops).set_auto_reply(user.id, prior or {"status": "disabled"})
        return None

    async def read() -> Any:
        found = await graph_of(ops).auto_reply(user.id)
        return {k: found.get(k) for k in expected}

    return body, _check("graph GET /users/{id}/mailboxSettings", expected, read)


def _mailbox_restorer(action: M365Action, key: str, field: str, to_param: Any) -> None:
    @restorer(action)
    def restore(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
        prior = rec.get(key)

        async def body() -> str | None:
            await exchange_of(ops).set_mailbox(user.upn, to_param(prior))
            return None

        async def read() -> Any:
            return (await exchange_of(ops).mailbox(user.upn))[field]

        return body, _check("exchange InvokeCommand Get-Mailbox", prior, read)


_mailbox_restorer(
    M365Action.CONVERT_TO_SHARED_MAILBOX, "mailbox_type", "RecipientTypeDetails",
    lambda prior: {"Type": "Shared" if prior == "SharedMailbox" else "Regular"},
)  # fmt: skip
_mailbox_restorer(
    M365Action.HIDE_FROM_ADDRESS_LISTS, "hidden", "HiddenFromAddressListsEnabled",
    lambda prior: {"HiddenFromAddressListsEnabled": prior is True},
)  # fmt: skip


@restorer(M365Action.DELEGATE_MAILBOX)
def _delegate(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    to = str(rec.get("to") or "")
    expected = {"forwarding": rec.get("forwarding"), "full_access": False}

    async def body() -> str | None:
        exchange = exchange_of(ops)
        if rec.get("forward"):
            await exchange.set_mailbox(
                user.upn,
                {
                    "ForwardingSmtpAddress": rec.get("forwarding"),
                    "DeliverToMailboxAndForward": rec.get("deliver_and_forward") is True,
                },
            )
        if rec.get("full_access_added") and to:
            await exchange.set_full_access(user.upn, to, present=False)
        return None

    async def read() -> Any:
        exchange = exchange_of(ops)
        box = await exchange.mailbox(user.upn)
        granted = bool(to) and to in await exchange.full_access(user.upn)
        return {
            "forwarding": box["ForwardingSmtpAddress"]
            if rec.get("forward")
            else rec.get("forwarding"),
            "full_access": granted if rec.get("full_access_added") else False,
        }

    return body, _check("exchange InvokeCommand Get-Mailbox, Get-MailboxPermission", expected, read)


@restorer(M365Action.DELEGATE_ONEDRIVE)
def _onedrive(ops: LeaverOps, d: M365Directory, user: M365User, rec: dict[str, Any]) -> Any:
    """The person's access as it was: removed when Sortie gave it, lowered back to the
    roles they held when Sortie raised them."""
    drive, person = rec.get("drive"), (str(rec.get("to_id") or ""), str(rec.get("to") or ""))
    prior = rec.get("prior_roles")

    async def body() -> str | None:
        if not isinstance(drive, str):
            return "no OneDrive was shared"
        graph = graph_of(ops)
        permissions = await graph.drive_permissions(drive)
        found = permission_of(permissions, *person)
        if found is None or roles_of(permissions, *person) == prior:
            return None
        if prior is None:
            await graph.unshare_drive(drive, found)
        else:
            await graph.set_drive_roles(drive, found, [str(r) for r in prior])
        return f"OneDrive access of {person[1]} as before"

    async def read() -> Any:
        if not isinstance(drive, str):
            return prior
        return roles_of(await graph_of(ops).drive_permissions(drive), *person)

    return body, _check("graph GET /drives/{id}/items/root/permissions", prior, read)


async def handle_reversal(
    event: ReversalRequested,
    *,
    directory: M365Directory,
    policy: RetryPolicy,
    identity: IdentityConfig = IdentityConfig(),
    ops: LeaverOps | None = None,
    tap: TapConfig = TapConfig(),
) -> RevocationCompleted | None:
    """Each recorded action restored, in M365_RESTORE_ACTIONS' order, then the pass."""
    if not event.addressed_to(SERVICE):
        return None
    ops = ops or LeaverOps()
    wanted = [
        (original, name)
        for original, name in M365_RESTORE_ACTIONS.items()
        if original in event.restore and event.retries(name)
    ]
    issue = event.issue_temporary_access_pass and event.retries(ISSUE_TEMPORARY_ACCESS_PASS)
    found = await resolve(event.subject, identity.lookups, directory, policy)
    user = found.user
    names = [n for _, n in wanted] + ([ISSUE_TEMPORARY_ACCESS_PASS] if issue else [])
    if user is None:
        steps: list[StepResult] = [_unresolved(n, found) for n in names]
    else:
        steps = []
        for original, name in wanted:
            body, check = RESTORERS[original](ops, directory, user, dict(event.restore[original]))
            steps.append(await run_step(SERVICE, name, body, policy, verify=check))
        if issue:
            steps.append(await issue_pass(ops, user, event, policy, tap))
    return report("reversal", event, steps, found.discovery())
