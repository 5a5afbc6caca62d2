"""The helpdesk's sign-in with the school's SSO, beside the API token (break-glass).

OpenID Connect: the authorization code flow with PKCE (OpenID Connect Core 1.0 §3.1;
RFC 7636, S256), the provider's endpoints from its discovery document (Discovery 1.0 §4),
the client authenticated with `client_secret_basic` (Core §9), and the id_token checked
as Core §3.1.3.7 says: signature against the provider's JWKS, `iss` equal to the
configured issuer, `aud` containing the client id (and `azp` equal to it when there are
several audiences), `exp`/`iat`, and the `nonce` of this sign-in (§3.1.2.1). httpx and
PyJWT (the orchestrator's JOSE library); Authlib is not pinned.

CAS: the protocol 3.0 service validation (CAS Protocol 3.0 Specification §2.5, §2.8:
`/p3/serviceValidate`, which returns the principal's attributes). The response is read
with python-cas (pinned); the request is made with httpx, with a timeout (python-cas's
own `requests` call has none).

Roles: each configured role matches one claim (OIDC) or attribute (CAS) value and grants
scopes and, optionally, sites (UAI codes or names); a person gets the union of what
matches, and is refused when nothing does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

import cas  # type: ignore[import-untyped]
import httpx
import jwt
from pydantic import BaseModel, ConfigDict, Field, SecretStr

log = logging.getLogger(__name__)

DISCOVERY_CACHE_S = 3600.0
TIMEOUT_S = 10.0


class SsoError(Exception):
    """A sign-in that cannot be completed; the message is safe to show."""


class ConsoleRole(BaseModel):
    """`claim` (an OIDC claim or a CAS attribute) must hold `value` (or list it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    claim: Annotated[str, Field(min_length=1, max_length=100)]
    value: Annotated[str, Field(min_length=1, max_length=200)]
    scopes: frozenset[str]
    # None: every site; else only requests, stations and actions of these sites.
    sites: frozenset[str] | None = None


class OidcLogin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    client_id: str
    client_secret: SecretStr
    scope: str = "openid profile email"
    label: str = "OpenID Connect"
    leeway_s: int = Field(default=60, ge=0, le=600)


class CasLogin(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # e.g. https://cas.school.example/cas (without a trailing /login)
    server_url: str
    label: str = "CAS"


class ConsoleSso(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    oidc: OidcLogin | None = None
    cas: CasLogin | None = None
    roles: list[ConsoleRole] = []


@dataclass(frozen=True, slots=True)
class Grant:
    name: str
    scopes: frozenset[str]
    sites: frozenset[str] | None


def _values(raw: object) -> set[str]:
    if isinstance(raw, str):
        return {raw}
    if isinstance(raw, list | tuple):
        return {str(v) for v in raw}
    return set() if raw is None else {str(raw)}


def grant_of(name: str, claims: Mapping[str, Any], roles: list[ConsoleRole]) -> Grant | None:
    """The scopes and sites the matching roles give; None when no role matches."""
    matched = [r for r in roles if r.value in _values(claims.get(r.claim))]
    if not matched:
        return None
    scopes = frozenset().union(*(r.scopes for r in matched))
    sites: frozenset[str] | None = None
    if all(r.sites is not None for r in matched):
        sites = frozenset().union(*(r.sites or frozenset() for r in matched))
    return Grant(name, scopes, sites)


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), RFC 7636 §4.1-§4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcClient:
    def __init__(self, settings: OidcLogin) -> None:
        self.settings = settings
        self._meta: dict[str, Any] | None = None
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:
            if self._meta is None or time.monotonic() - self._fetched > DISCOVERY_CACHE_S:
                url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
                meta = await _get_json(url)
                # Discovery §4.3: the issuer in the document is the one configured.
                if meta.get("issuer") != self.settings.issuer:
                    raise SsoError("the provider's discovery names another issuer")
                self._meta, self._fetched = meta, time.monotonic()
            return self._meta

    async def authorization_url(
        self, redirect_uri: str, state: str, nonce: str, challenge: str
    ) -> str:
        meta = await self.metadata()
        query = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": redirect_uri,
            "scope": self.settings.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{meta['authorization_endpoint']}?{urlencode(query)}"

    async def redeem(
        self, code: str, verifier: str, redirect_uri: str, nonce: str
    ) -> dict[str, Any]:
        """The id_token's claims, checked (Core §3.1.3.5-§3.1.3.7)."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        auth = (self.settings.client_id, self.settings.client_secret.get_secret_value())
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
                resp = await http.post(meta["token_endpoint"], data=form, auth=auth)
        except httpx.HTTPError as exc:
            raise SsoError(
                f"the provider's token endpoint is unreachable ({type(exc).__name__})"
            ) from exc
        if resp.status_code != 200:
            # RFC 6749 §5.2: `error` names the problem; never echo the body (no secrets there,
            # but nothing to gain either).
            error = _safe_json(resp).get("error", "unknown")
            raise SsoError(f"the provider refused the code ({str(error)[:40]})")
        id_token = _safe_json(resp).get("id_token")
        if not isinstance(id_token, str):
            raise SsoError("the provider's answer has no id_token")
        return await self._verify(id_token, meta, nonce)

    async def _verify(self, id_token: str, meta: dict[str, Any], nonce: str) -> dict[str, Any]:
        keys = jwt.PyJWKSet.from_dict(await _get_json(meta["jwks_uri"]))
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
            key = next((k for k in keys.keys if kid is None or k.key_id == kid), None)
            if key is None:
                raise SsoError("the id_token is signed with an unknown key")
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=list(meta.get("id_token_signing_alg_values_supported") or ["RS256"]),
                audience=self.settings.client_id,
                issuer=self.settings.issuer,
                leeway=self.settings.leeway_s,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise SsoError(f"the id_token is not valid ({type(exc).__name__})") from exc
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.settings.client_id:
            raise SsoError("the id_token was issued to another party (azp)")
        if not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SsoError("the id_token's nonce is not this sign-in's")
        return claims


async def cas_validate(settings: CasLogin, service: str, ticket: str) -> tuple[str, dict[str, Any]]:
    """(user, attributes) from `/p3/serviceValidate`; SsoError on a failure answer."""
    url = settings.server_url.rstrip("/") + "/p3/serviceValidate"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            resp = await http.get(url, params={"service": service, "ticket": ticket})
    except httpx.HTTPError as exc:
        raise SsoError(f"the CAS is unreachable ({type(exc).__name__})") from exc
    if resp.status_code != 200:
        raise SsoError(f"the CAS answered {resp.status_code}")
    try:
        user, attributes, _pgt = cas.CASClientV3.parse_response_xml(resp.content)
    except Exception as exc:  # python-cas raises ElementTree's errors, or IndexError
        raise SsoError("the CAS's answer is not a CAS 3.0 service response") from exc
    if not user:
        raise SsoError("the CAS refused the ticket")
    return str(user), dict(attributes or {})


def _safe_json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
            resp = await http.get(url)
            resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise SsoError(f"cannot read {url} ({type(exc).__name__})") from exc
    data = _safe_json(resp)
    if not data:
        raise SsoError(f"{url} is not a JSON object")
    return data
