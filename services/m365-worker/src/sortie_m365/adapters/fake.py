"""An in-memory `M365Directory` for tests: users, their state, scripted failures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import SecretStr

from sortie_core.errors import NotFoundError
from sortie_core.events import SkipReason
from sortie_core.steps import StepSkipped

from . import M365User


@dataclass
class FakeUser:
    enabled: bool = True
    revocations: int = 0
    password: SecretStr | None = None
    mail_protocols_enabled: bool = True
    guest: bool = False


@dataclass
class FakeDirectory:
    users: dict[str, FakeUser] = field(default_factory=dict)
    # Like the HTTP adapter of this issue, mailbox protocols are not configured by default.
    mail_protocols_supported: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    # `find_user` keys, apart from `calls` (the writes).
    lookups: list[str] = field(default_factory=list)
    _failures: dict[str, list[Exception]] = field(default_factory=dict)
    closed: bool = False

    @classmethod
    def with_users(
        cls, names: Iterable[str], *, mail_protocols_supported: bool = False
    ) -> FakeDirectory:
        return cls(
            users={n.lower(): FakeUser() for n in names},
            mail_protocols_supported=mail_protocols_supported,
        )

    def fail(self, method: str, *errors: Exception) -> None:
        """The next calls of `method` raise `errors`, one per call, then behave normally."""
        self._failures.setdefault(method, []).extend(errors)

    def _enter(self, method: str, user: str) -> FakeUser:
        self.calls.append((method, user))
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)
        found = self.users.get(user.lower())
        if found is None:
            raise NotFoundError("user not found in Microsoft 365 (fake)")
        return found

    async def find_user(self, key: str) -> M365User:
        self.lookups.append(key)
        pending = self._failures.get("find_user")
        if pending:
            raise pending.pop(0)
        found = self.users.get(key.lower())
        if found is None:
            raise NotFoundError("user not found in Microsoft 365 (fake)")
        return M365User(id=key.lower(), upn=key.lower(), guest=found.guest)

    async def revoke_sessions(self, user: str) -> None:
        self._enter("revoke_sessions", user).revocations += 1

    async def block_sign_in(self, user: str) -> None:
        self._enter("block_sign_in", user).enabled = False

    async def reset_password(self, user: str, password: SecretStr) -> None:
        self._enter("reset_password", user).password = password

    async def disable_mail_protocols(self, user: str) -> None:
        if not self.mail_protocols_supported:
            self.calls.append(("disable_mail_protocols", user))
            raise StepSkipped(
                "mailbox protocols adapter not configured",
                SkipReason.DISABLED_BY_CONFIGURATION,
            )
        self._enter("disable_mail_protocols", user).mail_protocols_enabled = False

    async def aclose(self) -> None:
        self.closed = True
