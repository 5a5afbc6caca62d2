"""The leaver's Exchange Online cmdlets, through the admin `InvokeCommand` path of
exchange.py (off unless `SORTIE_M365_EXCHANGE_URL` is set).

`Set-Mailbox -Type Shared|Regular`, `-HiddenFromAddressListsEnabled`,
`-ForwardingSmtpAddress` / `-DeliverToMailboxAndForward` and `Get-Mailbox` for the
read-back (https://learn.microsoft.com/powershell/module/exchange/set-mailbox,
…/get-mailbox); `Add-MailboxPermission` / `Remove-MailboxPermission -AccessRights
FullAccess` and `Get-MailboxPermission` (…/add-mailboxpermission). Permission:
`Exchange.ManageAsApp` and an Exchange administrator role.
"""

from __future__ import annotations

from typing import Any

from sortie_core.errors import NotFoundError

from .graph_sdk import MailboxProtocols

MAILBOX_FIELDS = (
    "RecipientTypeDetails",
    "HiddenFromAddressListsEnabled",
    "ForwardingSmtpAddress",
    "DeliverToMailboxAndForward",
)


class ExchangeLeaver:
    def __init__(self, mailbox: MailboxProtocols) -> None:
        self._m = mailbox

    async def mailbox(self, upn: str) -> dict[str, Any]:
        answer = await self._m.invoke("Get-Mailbox", {"Identity": upn})
        found = answer.get("value") if isinstance(answer, dict) else None
        if not isinstance(found, list) or len(found) != 1 or not isinstance(found[0], dict):
            raise NotFoundError("mailbox not found in Exchange Online")
        return {name: found[0].get(name) for name in MAILBOX_FIELDS}

    async def set_mailbox(self, upn: str, parameters: dict[str, Any]) -> None:
        await self._m.invoke("Set-Mailbox", {"Identity": upn, **parameters})

    async def full_access(self, upn: str) -> list[str]:
        answer = await self._m.invoke("Get-MailboxPermission", {"Identity": upn})
        rows = answer.get("value") if isinstance(answer, dict) else None
        return sorted(
            str(r["User"]).lower()
            for r in rows or []
            if isinstance(r, dict) and "FullAccess" in (r.get("AccessRights") or [])
        )

    async def set_full_access(self, upn: str, user: str, *, present: bool) -> None:
        cmdlet = "Add-MailboxPermission" if present else "Remove-MailboxPermission"
        params: dict[str, Any] = {"Identity": upn, "User": user, "AccessRights": ["FullAccess"]}
        params |= {"InheritanceType": "All", "AutoMapping": True} if present else {"Confirm": False}
        await self._m.invoke(cmdlet, params)

    async def set_protocols(self, upn: str, switches: dict[str, bool]) -> None:
        await self._m.invoke("Set-CASMailbox", {"Identity": upn, **switches})
