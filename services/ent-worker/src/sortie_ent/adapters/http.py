"""ENT applications and the CAS server over HTTP (aiohttp).

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
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from yarl import URL

from sortie_core.errors import PermanentError, RefusedError, TransientError
from sortie_core.events import ServiceTicket, Subject
from sortie_core.http import status_error, transport_error

from ..registry import Application, url_host
from . import CasSession, backchannel_logout_uri, bearer_token, logout_url


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Http:
    """One pooled aiohttp session: keep-alive per host, an idle connection taken in O(1)
    (httpx/httpcore re-checked every pooled connection on each request, ~1 ms of CPU a
    call). Created on first use, inside the running loop. Redirects are never followed."""

    def __init__(self, headers: Mapping[str, str], *, limit: int = 100) -> None:
        self._headers = dict(headers)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        # (scheme, host) -> the proxy from HTTP(S)_PROXY / NO_PROXY, or None.
        self._proxies: dict[tuple[str, str], tuple[URL | None, aiohttp.BasicAuth | None]] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit, keepalive_timeout=30),
                headers=self._headers,
                # One session serves every user: a cookie an application sets while
                # logging one user out must never ride along on the next user's logout.
                cookie_jar=aiohttp.DummyCookieJar(),
                # HTTP(S)_PROXY and NO_PROXY are read once per host (`_proxy`): with
                # trust_env, aiohttp reads them and ~/.netrc in a thread on every request.
                trust_env=False,
            )
        return self._session

    def _proxy(self, url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
        key = (url.scheme, url.host or "")
        if key not in self._proxies:
            try:
                self._proxies[key] = get_env_proxy_for_url(url)
            except LookupError:  # none configured, or NO_PROXY names the host
                self._proxies[key] = (None, None)
        return self._proxies[key]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(
        self,
        method: str,
        url: str,
        who: str,
        prefix: str,
        *,
        timeout_s: float,
        not_found: bool,
        encoded: bool = False,
        redirect_ok: bool = False,
        missing_code: str | None = None,
        **kwargs: Any,
    ) -> Answer:
        """`encoded`: `url` is already percent-encoded (kept as is)."""
        target = URL(url, encoded=encoded)
        proxy, proxy_auth = self._proxy(target)
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._get().request(
                method,
                target,
                proxy=proxy,
                proxy_auth=proxy_auth,
                allow_redirects=False,
                timeout=timeout,
                **kwargs,
            ) as response:
                answer = Answer(response.status, response.headers, await response.read())
        except (aiohttp.ClientError, TimeoutError) as err:
            raise transport_error(err, who, prefix) from err
        if redirect_ok and 300 <= answer.status < 400:
            return answer
        if not 200 <= answer.status < 300:
            raise status_error(
                answer.status,
                answer.headers,
                who,
                prefix,
                not_found=not_found,
                missing_code=missing_code,
            )
        return answer


def form(**fields: str) -> aiohttp.BytesPayload:
    """A urlencoded form body, as aiohttp makes one from a dict (`FormData`), built
    without its per-request type lookups."""
    return aiohttp.BytesPayload(
        urlencode(fields).encode(), content_type="application/x-www-form-urlencoded"
    )


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
    """`AppLogout` over one pooled HTTP session. `tokens` maps an application name to the
    bearer token read from its `token_env` at start-up."""

    def __init__(self, tokens: Mapping[str, SecretStr] | None = None) -> None:
        self._tokens = dict(tokens or {})
        self._http = Http({"User-Agent": "sortie-ent-worker"})

    async def aclose(self) -> None:
        await self._http.aclose()

    async def single_logout(
        self, app: Application, service_url: str, message: str, *, timeout_s: float
    ) -> None:
        if not app.matches(service_url):
            # The handler checked already; an adapter never calls outside the registry.
            raise RefusedError(f"{url_host(service_url)} is not a service URL of {app.name}")
        # CAS clients commonly answer a logout request with a redirect (django-cas-ng
        # does); CAS servers count any 2xx or 3xx as delivered, and so does Sortie. The
        # redirect itself is never followed.
        await self._http.send(
            "POST",
            service_url,
            f"{app.name} ({url_host(service_url)})",
            "app",
            timeout_s=timeout_s,
            not_found=False,
            redirect_ok=True,
            data=form(logoutRequest=message),
        )

    async def identity_logout(
        self, app: Application, subject: Subject, *, timeout_s: float
    ) -> None:
        values = {"cas_username": subject.sso_username, "user_id": subject.user_id}
        url = render(logout_url(app), values, lambda v: quote(v, safe=""))
        headers = dict(app.headers)
        content: bytes | None = None
        if app.body_template is not None:
            content_type = next(
                (v for k, v in headers.items() if k.lower() == "content-type"), None
            )
            if content_type is None:
                content_type = headers["Content-Type"] = "application/json"
            content = render(app.body_template, values, _escape_for(content_type)).encode()
        if (token := bearer_token(app, self._tokens)) is not None:
            headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        await self._http.send(
            app.method,
            url,
            f"{app.name} ({url_host(url)})",
            "app",
            timeout_s=timeout_s,
            not_found=True,
            # The placeholders were percent-encoded by `render`: sent as written.
            encoded=True,
            headers=headers,
            data=content,
        )

    async def backchannel_logout(
        self, app: Application, logout_token: str, *, timeout_s: float
    ) -> None:
        # OpenID Connect Back-Channel Logout 1.0 §2.5: a form POST; the RP answers 200
        # (204 is common too), 400 when it rejects the token.
        url = backchannel_logout_uri(app)
        who = f"{app.name} ({url_host(url)})"
        try:
            await self._http.send(
                "POST",
                url,
                who,
                "app",
                timeout_s=timeout_s,
                not_found=False,
                data=form(logout_token=logout_token),
                headers={"Cache-Control": "no-store"},
            )
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
    ) -> None:
        self._base = cas_url.rstrip("/")
        self._actuator = actuator
        self._timeout_s = timeout_s
        # The Authorization header aiohttp would write for `auth=` (deprecated there, and
        # re-encoded on every request).
        self._auth: dict[str, str] | None = None
        if actuator_user is not None and actuator_password is not None:
            basic = aiohttp.BasicAuth(
                actuator_user.get_secret_value(), actuator_password.get_secret_value()
            )
            self._auth = {"Authorization": basic.encode()}
        self._http = Http({"User-Agent": "sortie-ent-worker", "Accept": "application/json"})

    async def aclose(self) -> None:
        await self._http.aclose()

    def _needs_actuator(self) -> None:
        if not self._actuator:
            raise PermanentError(
                "the CAS ssoSessions actuator is not configured "
                "(SORTIE_ENT_CAS_ACTUATOR_ENABLED=false)",
                code="cas_actuator_not_configured",
            )

    async def _actuator_call(self, method: str, username: str) -> Answer:
        self._needs_actuator()
        # A 404 means the actuator is not exposed (CAS answers 200 for a user with no
        # session): reporting it as not_found would leave sessions alive unnoticed.
        return await self._http.send(
            method,
            f"{self._base}/actuator/ssoSessions/users/{quote(username, safe='')}",
            "the CAS ssoSessions actuator",
            "cas",
            timeout_s=self._timeout_s,
            not_found=False,
            encoded=True,
            missing_code="cas_actuator_missing",
            headers=self._auth,
        )

    async def user_sessions(self, username: str) -> list[CasSession]:
        answer = await self._actuator_call("GET", username)
        wanted = username.lower()
        try:
            listing = _ActuatorListing.model_validate_json(answer.body)
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
        # Apereo answers 200 for any TGT: a 404 means the REST module is missing.
        await self._http.send(
            "DELETE",
            f"{self._base}/v1/tickets/{quote(tgt, safe='')}",
            "the CAS ticket API",
            "cas",
            timeout_s=self._timeout_s,
            not_found=False,
            encoded=True,
            missing_code="cas_rest_missing",
        )

    async def destroy_user_sessions(self, username: str) -> None:
        answer = await self._actuator_call("DELETE", username)
        # One entry per TGT, each with its own status (500 when CAS failed to destroy it);
        # CAS 6 answered one top-level status instead.
        try:
            body = json.loads(answer.body)
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
