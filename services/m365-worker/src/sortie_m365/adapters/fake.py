"""An in-memory `M365Directory` for tests: users, their state, scripted failures, and lies.

It answers as the Graph adapter does against Graph: `get_user` by object id or UPN only
(not by mail), `find_users` by the FILTER_PROPERTIES, read-backs in Graph's JSON names
and `Get-CASMailbox`'s switches. `drop` names writes it accepts without applying, like
the simulator's `/_sim/drop-writes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from sortie_core.errors import NotFoundError, PermanentError
from sortie_core.events import SkipReason, utcnow
from sortie_core.steps import StepSkipped

from . import FILTER_PROPERTIES, FILTER_TOP, MAIL_PROTOCOLS, M365User


def _a_day_ago() -> datetime:
    return utcnow() - timedelta(days=1)


def _iso(moment: datetime) -> str:
    # Graph writes whole seconds in UTC with a Z.
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeUser:
    upn: str = ""
    # Defaults to the UPN, so that the calls a test reads name the user it made.
    id: str = ""
    mail: str | None = None
    employee_id: str | None = None
    sam_account_name: str | None = None
    enabled: bool = True
    revocations: int = 0
    password: SecretStr | None = None
    mail_protocols_enabled: bool = True
    guest: bool = False
    sessions_valid_from: datetime = field(default_factory=_a_day_ago)
    password_changed_at: datetime = field(default_factory=_a_day_ago)

    def filter_value(self, prop: str) -> str | None:
        return {
            "mail": self.mail,
            "userPrincipalName": self.upn,
            "employeeId": self.employee_id,
            "onPremisesSamAccountName": self.sam_account_name,
        }[prop]


@dataclass
class FakeDirectory:
    # Keyed by lower-cased UPN.
    users: dict[str, FakeUser] = field(default_factory=dict)
    # Like the Graph adapter, mailbox protocols are not configured by default.
    mail_protocols_supported: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Lookups (`get_user` keys, `find_users` as "prop=value"), apart from `calls` (writes).
    lookups: list[str] = field(default_factory=list)
    # Read-backs, as (what, user).
    reads: list[tuple[str, str]] = field(default_factory=list)
    # Writes accepted and not applied: "accountEnabled", "passwordProfile",
    # "revokeSignInSessions", "Set-CASMailbox".
    drop: set[str] = field(default_factory=set)
    _failures: dict[str, list[Exception]] = field(default_factory=dict)
    closed: bool = False

    @classmethod
    def with_users(
        cls, names: Iterable[str], *, mail_protocols_supported: bool = False
    ) -> FakeDirectory:
        directory = cls(mail_protocols_supported=mail_protocols_supported)
        for name in names:
            directory.add(name)
        return directory

    def add(self, upn: str, **attrs: Any) -> FakeUser:
        # Graph keeps a UPN as it was written and matches it case-insensitively.
        user = FakeUser(upn=upn, **attrs)
        user.id = user.id or user.upn
        self.users[upn.lower()] = user
        return user

    def fail(self, method: str, *errors: Exception) -> None:
        """The next calls of `method` raise `errors`, one per call, then behave normally."""
        self._failures.setdefault(method, []).extend(errors)

    def _raise_scripted(self, method: str) -> None:
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def _by_path(self, key: str) -> FakeUser:
        lowered = key.lower()
        for user in self.users.values():
            if lowered in (user.id.lower(), user.upn.lower()):
                return user
        raise NotFoundError("user not found in Microsoft 365 (fake)")

    def _enter(self, method: str, user: str) -> FakeUser:
        self.calls.append((method, user))
        self._raise_scripted(method)
        return self._by_path(user)

    @staticmethod
    def _found(user: FakeUser) -> M365User:
        return M365User(id=user.id, upn=user.upn, guest=user.guest)

    async def get_user(self, key: str) -> M365User:
        self.lookups.append(key)
        self._raise_scripted("get_user")
        return self._found(self._by_path(key))

    async def find_users(self, prop: str, value: str) -> list[M365User]:
        self.lookups.append(f"{prop}={value}")
        self._raise_scripted("find_users")
        if prop not in FILTER_PROPERTIES:
            raise PermanentError(f"cannot look users up by {prop!r}", code="invalid_lookup")
        lowered = value.lower()
        found = [u for u in self.users.values() if (u.filter_value(prop) or "").lower() == lowered]
        return [self._found(u) for u in found[:FILTER_TOP]]

    async def read_user(self, user: str, fields: Sequence[str]) -> dict[str, Any]:
        self.reads.append(("read_user", user))
        self._raise_scripted("read_user")
        found = self._by_path(user)
        view: dict[str, Any] = {
            "id": found.id,
            "userPrincipalName": found.upn,
            "accountEnabled": found.enabled,
            "signInSessionsValidFromDateTime": _iso(found.sessions_valid_from),
            "lastPasswordChangeDateTime": _iso(found.password_changed_at),
        }
        return {k: v for k, v in view.items() if k in fields}

    async def read_mail_protocols(self, user: str) -> dict[str, bool]:
        self.reads.append(("read_mail_protocols", user))
        self._not_configured()
        self._raise_scripted("read_mail_protocols")
        return dict.fromkeys(MAIL_PROTOCOLS, self._by_path(user).mail_protocols_enabled)

    async def revoke_sessions(self, user: str) -> None:
        found = self._enter("revoke_sessions", user)
        if "revokeSignInSessions" not in self.drop:
            found.revocations += 1
            found.sessions_valid_from = utcnow()

    async def block_sign_in(self, user: str) -> None:
        found = self._enter("block_sign_in", user)
        if "accountEnabled" not in self.drop:
            found.enabled = False

    async def reset_password(self, user: str, password: SecretStr) -> None:
        found = self._enter("reset_password", user)
        if "passwordProfile" not in self.drop:
            found.password = password
            found.password_changed_at = utcnow()

    def _not_configured(self) -> None:
        if not self.mail_protocols_supported:
            raise StepSkipped(
                "mailbox protocols adapter not configured",
                SkipReason.DISABLED_BY_CONFIGURATION,
            )

    async def disable_mail_protocols(self, user: str) -> None:
        if not self.mail_protocols_supported:
            self.calls.append(("disable_mail_protocols", user))
        self._not_configured()
        found = self._enter("disable_mail_protocols", user)
        if "Set-CASMailbox" not in self.drop:
            found.mail_protocols_enabled = False

    async def aclose(self) -> None:
        self.closed = True
