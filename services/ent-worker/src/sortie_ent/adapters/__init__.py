"""The contracts between the ENT handlers and the outside world.

`AppLogout` reaches ENT applications; `SsoSessions` reaches the CAS server.
Implementations translate every failure into Sortie's error tree (`sortie_core.errors`):
`TransientError`/`ThrottledError` (with `retry_after`) for what is worth retrying,
`NotFoundError` for "nothing to end there", `RefusedError` for a call Sortie will not
make (a URL outside the registry), `PermanentError` for the rest.
"""

from __future__ import annotations

from typing import Protocol

from sortie_core.events import Subject

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


class SsoSessions(Protocol):
    async def destroy_ticket(self, tgt: str) -> None:
        """End one SSO session by its ticket-granting ticket (NotFoundError if unknown)."""

    async def destroy_user_sessions(self, username: str) -> None:
        """End every SSO session of `username`."""

    async def aclose(self) -> None: ...
