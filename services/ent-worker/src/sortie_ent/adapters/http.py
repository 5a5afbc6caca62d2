"""ENT applications and the CAS server over HTTP (httpx).

CAS REST protocol: https://apereo.github.io/cas/development/protocol/REST-Protocol.html
(`DELETE /v1/tickets/{TGT}`, 200 for any TGT: apereo/cas `TicketGrantingTicketResource`);
the `ssoSessions` actuator:
https://apereo.github.io/cas/development/authentication/Configuring-SSO-Sessions.html ,
response shape from apereo/cas `SingleSignOnSessionsEndpoint` (support/cas-server-support-
reports): `{"activeSsoSessions": [{"ticket_granting_ticket", "authenticated_principal",
"authenticated_services": {ST id: {"id": service URL, "originalUrl", ...}}, ...}]}`.
Redirects are never followed: a logout call goes to the configured host or nowhere.
Nothing here logs or reports a URL path: it can carry tickets. Reports name the host.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from sortie_core.errors import (
    NotFoundError,
    PermanentError,
    RefusedError,
    SortieError,
    ThrottledError,
    TransientError,
)
from sortie_core.events import ServiceTicket, Subject
from sortie_core.http import parse_retry_after

from ..registry import Application, url_host
from . import CasSession, backchannel_logout_uri, bearer_token, logout_url


def status_error(
    response: httpx.Response,
    who: str,
    prefix: str,
    *,
    not_found: bool,
    missing_code: str | None = None,
) -> SortieError:
    """Translate an HTTP error status. `not_found`: whether 404 means "nothing to end";
    `missing_code`: the code of a 404 that means the endpoint itself is missing."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status == 429 or (status == 503 and retry_after is not None):
        return ThrottledError(
            f"{who} asked to slow down (HTTP {status})",
            code=f"{prefix}_throttled",
            retry_after=retry_after,
        )
    if status >= 500 or status in (408, 425):
        return TransientError(
            f"{who} answered HTTP {status}", code=f"{prefix}_unavailable", retry_after=retry_after
        )
    if status == 404 and not_found:
        return NotFoundError(f"{who} has nothing to end (HTTP 404)")
    if status == 404 and missing_code:
        return PermanentError(
            f"{who} answered HTTP 404: the endpoint is missing (module not deployed or "
            "wrong URL); the SSO session may still be alive",
            code=missing_code,
        )
    if status in (401, 403):
        return PermanentError(
            f"{who} refused Sortie's credentials (HTTP {status})", code=f"{prefix}_unauthorized"
        )
    if 300 <= status < 400:
        return PermanentError(
            f"{who} answered with a redirect (HTTP {status}), not followed",
            code=f"{prefix}_redirected",
        )
    return PermanentError(f"{who} answered HTTP {status}", code=f"{prefix}_rejected")


async def _send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    who: str,
    prefix: str,
    *,
    not_found: bool,
    auth: httpx.Auth | None = None,
    redirect_ok: bool = False,
    missing_code: str | None = None,
) -> httpx.Response:
    try:
        response = await client.send(request, auth=auth)
    except httpx.TimeoutException as err:
        raise TransientError(f"{who} timed out", code=f"{prefix}_timeout") from err
    except httpx.TransportError as err:
        raise TransientError(
            f"{who} unreachable ({type(err).__name__})", code=f"{prefix}_unreachable"
        ) from err
    if redirect_ok and response.is_redirect:
        return response
    if not response.is_success:
        raise status_error(response, who, prefix, not_found=not_found, missing_code=missing_code)
    return response


def _escape_for(content_type: str) -> Any:
    kind = content_type.split(";", maxsplit=1)[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return lambda v: json.dumps(v)[1:-1]
    if kind == "application/x-www-form-urlencoded":
        return quote_plus
    return lambda v: v


def render(template: str, values: Mapping[str, str], escape: Any) -> str:
    """Replace `{name}` placeholders, and nothing else (no str.format on user data)."""
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", escape(value))
    return out


class HttpAppLogout:
    """`AppLogout` over one pooled httpx client. `tokens` maps an application name to the
    bearer token read from its `token_env` at start-up."""

    def __init__(
        self,
        tokens: Mapping[str, SecretStr] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._tokens = dict(tokens or {})
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            transport=transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"User-Agent": "sortie-ent-worker"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def single_logout(
        self, app: Application, service_url: str, message: str, *, timeout_s: float
    ) -> None:
        if not app.matches(service_url):
            # The handler checked already; an adapter never calls outside the registry.
            raise RefusedError(f"{url_host(service_url)} is not a service URL of {app.name}")
        request = self._client.build_request(
            "POST", service_url, data={"logoutRequest": message}, timeout=timeout_s
        )
        # CAS clients commonly answer a logout request with a redirect (django-cas-ng
        # does); CAS servers count any 2xx or 3xx as delivered, and so does Sortie. The
        # redirect itself is never followed.
        await _send(
            self._client,
            request,
            f"{app.name} ({url_host(service_url)})",
            "app",
            not_found=False,
            redirect_ok=True,
        )

    async def identity_logout(
        self, app: Application, subject: Subject, *, timeout_s: float
    ) -> None:
        values = {"cas_username": subject.sso_username, "user_id": subject.user_id}
        url = render(logout_url(app), values, lambda v: quote(v, safe=""))
        headers = dict(app.headers)
        content: str | None = None
        if app.body_template is not None:
            content_type = next(
                (v for k, v in headers.items() if k.lower() == "content-type"), None
            )
            if content_type is None:
                content_type = headers["Content-Type"] = "application/json"
            content = render(app.body_template, values, _escape_for(content_type))
        if (token := bearer_token(app, self._tokens)) is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        request = self._client.build_request(
            app.method, url, headers=headers, content=content, timeout=timeout_s
        )
        await _send(self._client, request, f"{app.name} ({url_host(url)})", "app", not_found=True)

    async def backchannel_logout(
        self, app: Application, logout_token: str, *, timeout_s: float
    ) -> None:
        # OpenID Connect Back-Channel Logout 1.0 §2.5: a form POST; the RP answers 200
        # (204 is common too), 400 when it rejects the token.
        url = backchannel_logout_uri(app)
        request = self._client.build_request(
            "POST",
            url,
            data={"logout_token": logout_token},
            headers={"Cache-Control": "no-store"},
            timeout=timeout_s,
        )
        who = f"{app.name} ({url_host(url)})"
        try:
            await _send(self._client, request, who, "app", not_found=False)
        except PermanentError as exc:
            if exc.code != "app_rejected":
                raise
            # The RP could not validate the token. Most often its copy of the JWKS lacks
            # the signing key (just rotated, or re-published after Redis lost its data):
            # worth sending again later (follow-up delivery), not a final answer.
            raise TransientError(
                f"{exc.message}: the logout token was refused (JWKS not current there?)",
                code="logout_token_rejected",
            ) from exc


class _Service(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    originalUrl: str | None = None


class _ActuatorSession(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ticket_granting_ticket: str
    authenticated_principal: str = ""
    authenticated_services: dict[str, _Service] = {}


class _ActuatorListing(BaseModel):
    model_config = ConfigDict(extra="ignore")

    activeSsoSessions: list[_ActuatorSession]


def _cas_session(raw: _ActuatorSession) -> CasSession:
    services = tuple(
        ServiceTicket(service=url, ticket=ticket)
        for ticket, svc in raw.authenticated_services.items()
        if (url := svc.id or svc.originalUrl) and ticket
    )
    return CasSession(raw.ticket_granting_ticket, raw.authenticated_principal, services)


class CasRestSessions:
    """`SsoSessions` on Apereo CAS: the REST ticket API and the `ssoSessions` actuator.
    `actuator=False`: the deployment has no actuator, so nothing can be read back."""

    source = "cas ssoSessions actuator"

    def __init__(
        self,
        cas_url: str,
        *,
        actuator: bool = True,
        actuator_user: SecretStr | None = None,
        actuator_password: SecretStr | None = None,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._actuator = actuator
        self._auth: httpx.Auth | None = None
        if actuator_user is not None and actuator_password is not None:
            self._auth = httpx.BasicAuth(
                actuator_user.get_secret_value(), actuator_password.get_secret_value()
            )
        self._client = httpx.AsyncClient(
            base_url=cas_url.rstrip("/"),
            follow_redirects=False,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": "sortie-ent-worker", "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _needs_actuator(self) -> None:
        if not self._actuator:
            raise PermanentError(
                "the CAS ssoSessions actuator is not configured "
                "(SORTIE_ENT_CAS_ACTUATOR_ENABLED=false)",
                code="cas_actuator_not_configured",
            )

    async def user_sessions(self, username: str) -> list[CasSession]:
        self._needs_actuator()
        path = f"/actuator/ssoSessions/users/{quote(username, safe='')}"
        response = await _send(
            self._client,
            self._client.build_request("GET", path),
            "the CAS ssoSessions actuator",
            "cas",
            not_found=False,
            auth=self._auth,
            missing_code="cas_actuator_missing",
        )
        wanted = username.lower()
        try:
            listing = _ActuatorListing.model_validate_json(response.content)
            return [
                _cas_session(s)
                for s in listing.activeSsoSessions
                # Apereo filters case-insensitively; an older CAS may not filter at all.
                if s.authenticated_principal.lower() == wanted
            ]
        except ValidationError as err:
            raise PermanentError(
                "the CAS ssoSessions actuator answered an unexpected body",
                code="cas_actuator_unexpected",
            ) from err

    async def destroy_ticket(self, tgt: str) -> None:
        request = self._client.build_request("DELETE", f"/v1/tickets/{quote(tgt, safe='')}")
        # Apereo answers 200 for any TGT: a 404 means the REST module is missing.
        await _send(
            self._client,
            request,
            "the CAS ticket API",
            "cas",
            not_found=False,
            missing_code="cas_rest_missing",
        )

    async def destroy_user_sessions(self, username: str) -> None:
        self._needs_actuator()
        path = f"/actuator/ssoSessions/users/{quote(username, safe='')}"
        # A 404 here means the actuator is not exposed (CAS answers 200 for a user with no
        # session): reporting it as not_found would leave sessions alive unnoticed.
        response = await _send(
            self._client,
            self._client.build_request("DELETE", path),
            "the CAS ssoSessions actuator",
            "cas",
            not_found=False,
            auth=self._auth,
            missing_code="cas_actuator_missing",
        )
        # One entry per TGT, each with its own status (500 when CAS failed to destroy it);
        # CAS 6 answered one top-level status instead.
        try:
            body = response.json()
        except ValueError:
            body = {}
        entries = list(body.values()) if isinstance(body, dict) else []
        failed = [e for e in entries if isinstance(e, dict) and e.get("status") not in (200, None)]
        if isinstance(body, dict) and body.get("status") not in (200, None):
            failed.append(body)
        if failed:
            raise TransientError(
                f"the CAS failed to destroy {len(failed)} SSO session(s)",
                code="cas_destroy_failed",
            )
