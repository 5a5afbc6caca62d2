"""The contract between the handlers and Microsoft 365.

Implementations translate every vendor error into Sortie's error tree
(`sortie_core.errors`): `NotFoundError` when the user does not exist, `TransientError` /
`ThrottledError` (with `retry_after`) for what is worth retrying, `PermanentError` for the
rest. A step that cannot be done by this implementation raises
`sortie_core.steps.StepSkipped`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from sortie_core.events import M365Action
from sortie_core.services import MAIL_PROTOCOLS

__all__ = [
    "FILTER_PROPERTIES",
    "FILTER_TOP",
    "MAIL_PROTOCOLS",
    "READ_BACK",
    "M365Directory",
    "M365User",
]

# Graph `$filter` properties a user can be looked up by (`eq`), and whether `eq` on it is an
# advanced query (`ConsistencyLevel: eventual` and `$count=true`), per the table in
# https://learn.microsoft.com/graph/aad-advanced-queries ("Support for filter by properties").
FILTER_PROPERTIES: dict[str, bool] = {
    "mail": False,
    "userPrincipalName": False,
    "employeeId": False,
    "onPremisesSamAccountName": True,
}
# The user property each write's read-back reads (verify.py): an adapter may read it with
# the write, for `read_user` to answer once.
READ_BACK = {
    M365Action.BLOCK_SIGN_IN: "accountEnabled",
    M365Action.REVOKE_SESSIONS: "signInSessionsValidFromDateTime",
    M365Action.RESET_PASSWORD: "lastPasswordChangeDateTime",
}
# How many matches a filter lookup asks for: two tell "one user" from "ambiguous".
FILTER_TOP = 2


@dataclass(frozen=True, slots=True)
class M365User:
    """Who a UPN, mail address or object id turned out to be."""

    id: str
    upn: str
    guest: bool = False


class M365Directory(Protocol):
    """One user's account in Microsoft 365 (Entra ID and Exchange Online).

    `user` is the object id a lookup returned (Graph's `/users/{id}` also takes a UPN).
    """

    async def get_user(self, key: str) -> M365User:
        """`GET /users/{key}`: `key` is an object id or a UPN (Graph does not resolve a
        mail address there); `NotFoundError` if Graph does not know it."""

    async def find_users(self, prop: str, value: str) -> list[M365User]:
        """`GET /users?$filter={prop} eq '{value}'` (a FILTER_PROPERTIES name), at most
        FILTER_TOP users; an empty list when none matches."""

    async def read_user(self, user: str, fields: Sequence[str]) -> dict[str, Any]:
        """`GET /users/{user}?$select=…`: the properties as Graph returns them (JSON)."""

    async def read_mail_protocols(self, user: str) -> dict[str, bool]:
        """`Get-CASMailbox`: each MAIL_PROTOCOLS switch of the user's mailbox. Raises
        `StepSkipped` when the Exchange path is not configured."""

    async def revoke_sessions(self, user: str) -> None:
        """Invalidate every refresh token and session cookie of the user."""

    async def block_sign_in(self, user: str) -> None:
        """Set `accountEnabled` to false."""

    async def reset_password(self, user: str, password: SecretStr) -> None:
        """Replace the password with `password`, which nobody is told."""

    async def disable_mail_protocols(self, user: str) -> None:
        """Switch off OWA, ActiveSync, MAPI, EWS, POP, IMAP and Outlook mobile."""

    async def aclose(self) -> None:
        """Release connections."""
