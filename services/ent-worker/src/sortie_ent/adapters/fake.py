"""In-memory `AppLogout`, `SsoSessions` and `TicketVault` for tests: calls recorded,
failures scripted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pydantic import SecretStr

from sortie_core.errors import PermanentError, RefusedError
from sortie_core.events import ServiceTicket, Subject

from ..registry import Application, url_host
from . import CasSession, backchannel_logout_uri, bearer_token, logout_url


@dataclass(frozen=True, slots=True)
class SloCall:
    app: str
    service_url: str
    message: str


@dataclass
class FakeAppLogout:
    """Refuses what `HttpAppLogout` refuses before sending anything (a service URL outside
    the application, no logout URL, a token not set: `tokens` as HttpAppLogout takes them),
    then records the call and behaves as scripted."""

    tokens: dict[str, SecretStr] = field(default_factory=dict)
    slo_calls: list[SloCall] = field(default_factory=list)
    identity_calls: list[tuple[str, str]] = field(default_factory=list)
    bcl_calls: list[tuple[str, str]] = field(default_factory=list)
    # Application names, once per call that succeeded (what the application received).
    delivered: list[str] = field(default_factory=list)
    # Per application name: what the next calls raise, one per call (None: succeed).
    failures: dict[str, list[Exception | None]] = field(default_factory=dict)
    # Per application name: seconds each call takes.
    delays: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    closed: bool = False

    def fail(self, app: str, *errors: Exception | None) -> None:
        self.failures.setdefault(app, []).extend(errors)

    async def _behave(self, app: str) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.delays.get(app, 0.0)
            if delay:
                await asyncio.sleep(delay)
            pending = self.failures.get(app)
            error = pending.pop(0) if pending else None
            if error is not None:
                raise error
            self.delivered.append(app)
        finally:
            self.in_flight -= 1

    async def single_logout(
        self, app: Application, service_url: str, message: str, *, timeout_s: float
    ) -> None:
        if not app.matches(service_url):
            raise RefusedError(f"{url_host(service_url)} is not a service URL of {app.name}")
        self.slo_calls.append(SloCall(app.name, service_url, message))
        await self._behave(app.name)

    async def identity_logout(
        self, app: Application, subject: Subject, *, timeout_s: float
    ) -> None:
        logout_url(app)
        bearer_token(app, self.tokens)
        self.identity_calls.append((app.name, subject.sso_username))
        await self._behave(app.name)

    async def backchannel_logout(
        self, app: Application, logout_token: str, *, timeout_s: float
    ) -> None:
        backchannel_logout_uri(app)
        self.bcl_calls.append((app.name, logout_token))
        await self._behave(app.name)

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeSsoSessions:
    """A CAS holding `sessions` (TGT -> username) and the services each TGT reached
    (`services`: TGT -> tickets). Like Apereo: a TGT delete answers the same whether the
    TGT is known or not; `rest_missing` answers 404 there (`cas_rest_missing`),
    `keep_sessions_on_delete` accepts deletes and keeps the sessions, `actuator=False` is
    a deployment without the actuator. `failures` are raised by the next deletes and
    `read_failures` by the next reads, one per call."""

    sessions: dict[str, str] = field(default_factory=dict)
    services: dict[str, list[ServiceTicket]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)
    read_failures: list[Exception] = field(default_factory=list)
    keep_sessions_on_delete: bool = False
    rest_missing: bool = False
    actuator: bool = True
    closed: bool = False
    source: str = "cas ssoSessions actuator"

    def login(self, tgt: str, username: str, *services: ServiceTicket) -> None:
        self.sessions[tgt] = username
        self.services[tgt] = list(services)

    def _needs_actuator(self) -> None:
        if not self.actuator:
            raise PermanentError(
                "the CAS ssoSessions actuator is not configured",
                code="cas_actuator_not_configured",
            )

    async def user_sessions(self, username: str) -> list[CasSession]:
        self.calls.append(("user_sessions", username))
        self._needs_actuator()
        if self.read_failures:
            raise self.read_failures.pop(0)
        return [
            CasSession(tgt, user, tuple(self.services.get(tgt, ())))
            for tgt, user in sorted(self.sessions.items())
            if user.lower() == username.lower()
        ]

    async def destroy_ticket(self, tgt: str) -> None:
        self.calls.append(("destroy_ticket", tgt))
        if self.rest_missing:
            raise PermanentError("the CAS ticket API answered HTTP 404", code="cas_rest_missing")
        if self.failures:
            raise self.failures.pop(0)
        if not self.keep_sessions_on_delete:
            self.sessions.pop(tgt, None)

    async def destroy_user_sessions(self, username: str) -> None:
        self.calls.append(("destroy_user_sessions", username))
        self._needs_actuator()
        if self.failures:
            raise self.failures.pop(0)
        if not self.keep_sessions_on_delete:
            for tgt in [t for t, user in self.sessions.items() if user.lower() == username.lower()]:
                del self.sessions[tgt]

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeTicketVault:
    by_request: dict[str, tuple[ServiceTicket, ...]] = field(default_factory=dict)

    async def kept(self, request_id: str) -> tuple[ServiceTicket, ...]:
        return self.by_request.get(request_id, ())

    async def keep(self, request_id: str, tickets: tuple[ServiceTicket, ...]) -> None:
        if tickets:
            self.by_request[request_id] = tickets
        else:
            self.by_request.pop(request_id, None)
