"""Exchange Online's mailbox cmdlets Sortie's leaver actions run through `InvokeCommand`.

Parameters and answers follow the cmdlet reference:
- `Set-Mailbox -Identity -Type Regular|Shared -HiddenFromAddressListsEnabled
  -ForwardingSmtpAddress -DeliverToMailboxAndForward`
  (https://learn.microsoft.com/powershell/module/exchange/set-mailbox), `Get-Mailbox
  -Identity` answering `RecipientTypeDetails` (`UserMailbox` / `SharedMailbox`) and the
  same properties (https://learn.microsoft.com/powershell/module/exchange/get-mailbox);
- `Add-MailboxPermission` / `Remove-MailboxPermission -Identity -User -AccessRights
  FullAccess`, `Get-MailboxPermission -Identity` listing `User` and `AccessRights`
  (https://learn.microsoft.com/powershell/module/exchange/add-mailboxpermission).
Anything else is refused, as the cmdlet refuses an unknown parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAILBOX_CMDLETS = frozenset(
    {"Set-Mailbox", "Get-Mailbox", "Add-MailboxPermission", "Remove-MailboxPermission",
     "Get-MailboxPermission"}
)  # fmt: skip
_SET = {
    "Type": str,
    "HiddenFromAddressListsEnabled": bool,
    "ForwardingSmtpAddress": (str, type(None)),
    "DeliverToMailboxAndForward": bool,
}
_PERMISSION = {"User": str, "AccessRights": list, "InheritanceType": str, "AutoMapping": bool,
               "Confirm": bool}  # fmt: skip


@dataclass
class Mailbox:
    recipient_type: str = "UserMailbox"
    hidden: bool = False
    forwarding: str | None = None
    deliver_and_forward: bool = False
    full_access: set[str] = field(default_factory=set)

    def view(self, identity: str) -> dict[str, Any]:
        return {
            "Identity": identity,
            "RecipientTypeDetails": self.recipient_type,
            "HiddenFromAddressListsEnabled": self.hidden,
            "ForwardingSmtpAddress": self.forwarding,
            "DeliverToMailboxAndForward": self.deliver_and_forward,
        }


def _checked(params: dict[str, Any], allowed: dict[str, Any]) -> str | None:
    for name, value in params.items():
        if name == "Identity":
            continue
        if name not in allowed:
            return f"A parameter cannot be found that matches parameter name '{name[:80]}'."
        if not isinstance(value, allowed[name]):
            return f"Cannot convert the value of parameter '{name}'."
    return None


def mailbox_command(
    mailboxes: dict[str, Mailbox], user_id: str, identity: str, name: str, params: dict[str, Any]
) -> tuple[int, Any]:
    """(HTTP status, body) of one mailbox cmdlet for the user `user_id`."""
    box = mailboxes.setdefault(user_id, Mailbox())
    problem = _checked(params, _SET if name in ("Set-Mailbox", "Get-Mailbox") else _PERMISSION)
    if name.startswith("Get-") and len(params) > 1:
        problem = problem or "Get cmdlets take only -Identity here."
    if (
        problem is None
        and name == "Set-Mailbox"
        and params.get("Type", "Shared")
        not in (
            "Shared",
            "Regular",
        )
    ):
        problem = "Cannot convert value to type Microsoft.Exchange...ConvertibleMailboxSubType."
    grants = name.endswith("-MailboxPermission") and not name.startswith("Get")
    if problem is None and grants and params.get("AccessRights") != ["FullAccess"]:
        problem = "Only -User <name> -AccessRights FullAccess is supported here."
    if problem is not None:
        return 400, {"error": {"code": "BadRequest", "message": problem}}
    if name == "Get-Mailbox":
        return 200, {"value": [box.view(identity)]}
    if name == "Get-MailboxPermission":
        rows = [{"Identity": identity, "User": u, "AccessRights": ["FullAccess"]}
                for u in sorted(box.full_access)]  # fmt: skip
        return 200, {"value": rows}
    if name == "Add-MailboxPermission":
        box.full_access.add(params["User"].lower())
    elif name == "Remove-MailboxPermission":
        box.full_access.discard(params["User"].lower())
    else:
        if "Type" in params:
            box.recipient_type = "SharedMailbox" if params["Type"] == "Shared" else "UserMailbox"
        box.hidden = params.get("HiddenFromAddressListsEnabled", box.hidden)
        if "ForwardingSmtpAddress" in params:
            box.forwarding = params["ForwardingSmtpAddress"] or None
        box.deliver_and_forward = params.get("DeliverToMailboxAndForward", box.deliver_and_forward)
    return 200, {"value": []}
