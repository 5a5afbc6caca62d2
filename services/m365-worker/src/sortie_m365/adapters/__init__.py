"""The contract between the handlers and Microsoft 365.

Implementations translate every vendor error into Sortie's error tree
(`sortie_core.errors`): `NotFoundError` when the user does not exist, `TransientError` /
`ThrottledError` (with `retry_after`) for what is worth retrying, `PermanentError` for the
rest. A step that cannot be done by this implementation raises
`sortie_core.steps.StepSkipped`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr


@dataclass(frozen=True, slots=True)
class M365User:
    """Who a UPN, mail address or object id turned out to be."""

    id: str
    upn: str
    guest: bool = False


class M365Directory(Protocol):
    """One user's account in Microsoft 365 (Entra ID and Exchange Online).

    `user` is the object id `find_user` returned (Graph's `/users/{id}` also takes a UPN).
    """

    async def find_user(self, key: str) -> M365User:
        """The user whose UPN, mail or object id is `key`; `NotFoundError` if none."""

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
