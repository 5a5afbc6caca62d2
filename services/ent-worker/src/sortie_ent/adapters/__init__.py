"""The contracts between the ENT handlers and the outside world.

`AppLogout` reaches ENT applications; `SsoSessions` reaches the CAS server; `TicketVault`
keeps, between the attempts of one request, the tickets of applications not logged out yet.
Implementations translate every failure into Sortie's error tree (`sortie_core.errors`):
`TransientError`/`ThrottledError` (with `retry_after`) for what is worth retrying,
`NotFoundError` for "nothing to end there", `RefusedError` for a call Sortie will not
make (a URL outside the registry), `PermanentError` for the rest (on the CAS: code
`cas_rest_missing` when the REST ticket API answers 404, `cas_actuator_missing` when the
actuator does, `cas_actuator_not_configured` when Sortie was told it has none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import SecretStr

from sortie_core.errors import PermanentError
from sortie_core.events import ServiceTicket, Subject

from ..registry import Application


class AppLogout(Protocol):
    async def single_logout(
        self, app: Application, service_url: str, message: str, *, timeout_s: float
    ) -> None:
        """POST a CAS SLO `message` (SAML LogoutRequest) to `service_url` of `app`.

        Refuses (RefusedError) a `service_url` that `app` does not match."""

    async def identity_logout(
        self, app: Application, subject: Subject, *, timeout_s: float
    ) -> None:
        """Call the logout endpoint of an `http` application for `subject`."""

    async def backchannel_logout(
        self, app: Application, logout_token: str, *, timeout_s: float
    ) -> None:
        """POST an OIDC `logout_token` to the `backchannel_logout_uri` of `app`."""

    async def aclose(self) -> None: ...


def logout_url(app: Application) -> str:
    """The identity logout URL of `app` (`app_misconfigured` without one)."""
    if app.logout_url is None:
        raise PermanentError(f"{app.name} has no logout_url", code="app_misconfigured")
    return app.logout_url


def backchannel_logout_uri(app: Application) -> str:
    """Where `app` takes OIDC logout tokens (`app_misconfigured` without it)."""
    if app.backchannel_logout_uri is None:
        raise PermanentError(f"{app.name} has no backchannel_logout_uri", code="app_misconfigured")
    return app.backchannel_logout_uri


def bearer_token(app: Application, tokens: Mapping[str, SecretStr]) -> SecretStr | None:
    """The token `app` is called with: None without `token_env`, `app_token_missing` when
    its variable was not set."""
    if not app.token_env:
        return None
    token = tokens.get(app.name)
    if token is None or not token.get_secret_value():
        raise PermanentError(
            f"{app.name}: environment variable {app.token_env} is not set",
            code="app_token_missing",
        )
    return token


@dataclass(frozen=True, slots=True)
class CasSession:
    """One SSO session as the CAS reports it: its TGT and every service it reached."""

    tgt: str
    username: str
    services: tuple[ServiceTicket, ...] = ()

    def __repr__(self) -> str:  # the TGT and tickets are credentials
        return f"CasSession(username={self.username!r}, services={len(self.services)})"


class SsoSessions(Protocol):
    # Where sessions are read from, for evidence and discovery reports.
    source: str

    async def user_sessions(self, username: str) -> list[CasSession]:
        """Every live SSO session of `username`, with the services each reached."""

    async def destroy_ticket(self, tgt: str) -> None:
        """End one SSO session by its ticket-granting ticket. The CAS answers the same for
        a known and an unknown TGT: only `user_sessions` tells whether it is gone."""

    async def destroy_user_sessions(self, username: str) -> None:
        """End every SSO session of `username`."""

    async def aclose(self) -> None: ...


class TicketVault(Protocol):
    """The service tickets of applications whose logout is to be tried again (follow-up):
    the CAS forgets them once the SSO session is destroyed."""

    async def kept(self, request_id: str) -> tuple[ServiceTicket, ...]:
        """What an earlier attempt of the request kept (nothing when none did)."""

    async def keep(self, request_id: str, tickets: tuple[ServiceTicket, ...]) -> None:
        """Replace what is kept for the request; no tickets: forget it."""
