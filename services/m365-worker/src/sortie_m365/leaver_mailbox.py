"""The leaver's mailbox actions: the automatic reply (Graph mailboxSettings) and, through
Exchange Online's InvokeCommand (off unless configured), the shared mailbox, the address
lists and the delegation of mail to the manager or a named person.

- set_auto_reply: `PATCH /users/{id}/mailboxSettings` (automaticRepliesSetting, option
  `message`); verified when it reads `alwaysEnabled` with the message;
- convert_to_shared_mailbox: `Set-Mailbox -Type Shared`; verified by `Get-Mailbox`
  RecipientTypeDetails `SharedMailbox`;
- hide_from_address_lists: `Set-Mailbox -HiddenFromAddressListsEnabled $true`;
- delegate_mailbox: `-ForwardingSmtpAddress` and/or `Add-MailboxPermission FullAccess` to
  the manager (`GET /users/{id}/manager`) or `to: <upn>`; both read back.
"""

from __future__ import annotations

from typing import Any

from sortie_core.errors import PermanentError
from sortie_core.events import Evidence, M365Action, SkipReason
from sortie_core.steps import Contradicted, StepSkipped

from .adapters import M365User
from .leaver_plan import LeaverOps, Plan, evidence, exchange_of, graph_of, planner

_MAX_MESSAGE = 4000


@planner(M365Action.SET_AUTO_REPLY)
def _auto_reply(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    message = options.get("message")
    external = options.get("external_message", message)
    audience = options.get("external_audience", "all")
    plan = Plan()

    async def body() -> str | None:
        if not isinstance(message, str) or not message or len(message) > _MAX_MESSAGE:
            raise StepSkipped(
                "no automatic reply message in the profile's options",
                SkipReason.DISABLED_BY_CONFIGURATION,
            )
        graph = graph_of(ops)
        if not plan.record:
            plan.record["auto_reply"] = await graph.auto_reply(user.id)
        await graph.set_auto_reply(
            user.id,
            {
                "status": "alwaysEnabled",
                "externalAudience": audience,
                "internalReplyMessage": message,
                "externalReplyMessage": external,
            },
        )
        return "automatic reply on"

    async def verify() -> Evidence:
        found = await graph_of(ops).auto_reply(user.id)
        status = found.get("status")
        same = found.get("internalReplyMessage") == message
        proof = evidence(
            "graph GET /users/{id}/mailboxSettings", status=status, message_matches=same
        )
        if status != "alwaysEnabled" or not same:
            raise Contradicted(f"Graph reads automatic replies {status!r}", proof)
        return proof

    return plan.set(body, verify)


def _mailbox_flag(
    action: M365Action, field: str, value: Any, key: str, parameter: str, to: Any
) -> None:
    """An action that sets one Get-Mailbox property (`field`) with one Set-Mailbox
    parameter, recording its prior value under `key`."""

    @planner(action)
    def plan_it(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
        plan = Plan()

        async def body() -> str | None:
            exchange = exchange_of(ops)
            if not plan.record:
                plan.record[key] = (await exchange.mailbox(user.upn))[field]
            await exchange.set_mailbox(user.upn, {parameter: to})
            return None

        async def verify() -> Evidence:
            found = (await exchange_of(ops).mailbox(user.upn))[field]
            proof = evidence("exchange InvokeCommand Get-Mailbox", **{field: found})
            if found != value:
                raise Contradicted(f"Exchange reads {field}={found!r}", proof)
            return proof

        plan.body, plan.verify = body, verify
        return plan


_mailbox_flag(
    M365Action.CONVERT_TO_SHARED_MAILBOX,
    "RecipientTypeDetails", "SharedMailbox", "mailbox_type", "Type", "Shared",
)  # fmt: skip
_mailbox_flag(
    M365Action.HIDE_FROM_ADDRESS_LISTS,
    "HiddenFromAddressListsEnabled", True, "hidden", "HiddenFromAddressListsEnabled", True,
)  # fmt: skip


@planner(M365Action.DELEGATE_MAILBOX)
def _delegate(ops: LeaverOps, user: M365User, options: dict[str, Any]) -> Plan:
    to = options.get("to", "manager")
    forward = options.get("forward", True) is True
    full_access = options.get("full_access", True) is True
    plan = Plan()
    target: list[str] = []

    async def body() -> str | None:
        exchange = exchange_of(ops)
        if not target:
            name = await graph_of(ops).manager(user.id) if to == "manager" else to
            if not isinstance(name, str) or "@" not in name:
                raise PermanentError("no manager (or person) to delegate to", code="no_delegate")
            target.append(name.lower())
        if not plan.record:
            box = await exchange.mailbox(user.upn)
            had = target[0] in await exchange.full_access(user.upn)
            plan.record.update(
                to=target[0],
                forwarding=box["ForwardingSmtpAddress"],
                deliver_and_forward=box["DeliverToMailboxAndForward"],
                full_access_added=full_access and not had,
                forward=forward,
            )
        if forward:
            address = {"ForwardingSmtpAddress": f"smtp:{target[0]}"}
            await exchange.set_mailbox(user.upn, {**address, "DeliverToMailboxAndForward": True})
        if full_access:
            await exchange.set_full_access(user.upn, target[0], present=True)
        return f"mail delegated to {target[0]}"

    async def verify() -> Evidence:
        exchange = exchange_of(ops)
        box = await exchange.mailbox(user.upn)
        granted = target[0] in await exchange.full_access(user.upn)
        forwarding = box["ForwardingSmtpAddress"]
        proof = evidence(
            "exchange InvokeCommand Get-Mailbox, Get-MailboxPermission",
            forwarding=forwarding,
            full_access=granted,
        )
        if (forward and forwarding != f"smtp:{target[0]}") or (full_access and not granted):
            raise Contradicted("Exchange does not read the delegation back", proof)
        return proof

    return plan.set(body, verify)
