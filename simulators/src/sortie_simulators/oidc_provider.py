"""An OpenID Connect provider (Entra ID, Okta, Keycloak...) for the helpdesk sign-in, as
OpenID Connect Core 1.0 (https://openid.net/specs/openid-connect-core-1_0.html) and its
companions describe it:

- Discovery 1.0 §3/§4: `GET /.well-known/openid-configuration`, with `issuer` equal to the
  URL it is fetched under (§4.3), and `code_challenge_methods_supported` (RFC 8414 §2).
- `GET /jwks` (RFC 7517): the RS256 public key; the id_token header names its `kid`.
- `GET /authorize` (Core §3.1.2.1): `response_type=code`, `scope` containing `openid`,
  a registered `client_id` and its exact `redirect_uri` (§3.1.2.1: "MUST exactly match"),
  `state`, `nonce`, and PKCE `code_challenge` with `code_challenge_method=S256` (RFC 7636
  §4.3; this provider requires PKCE, as OAuth 2.1 does). A bad client or redirect URI is
  shown as an error page and never redirected to (RFC 6749 §4.1.2.1); other errors are
  redirected with `error` and `state` (Core §3.1.2.6). Then a sign-in form (any
  non-empty user and password), and a 302 to `redirect_uri?code=…&state=…` (§3.1.2.5).
- `POST /token` (Core §3.1.3.1, RFC 6749 §4.1.3): `grant_type=authorization_code`, the
  client authenticated by `client_secret_basic` or `client_secret_post` (Core §9), the
  same `redirect_uri`, and `code_verifier` whose BASE64URL(SHA256()) is the challenge
  (RFC 7636 §4.6). A code is used once (RFC 6749 §4.1.2: a second use is refused) and
  lives `CODE_TTL_S`. Errors are RFC 6749 §5.2 JSON (`invalid_grant`, `invalid_client`
  with 401, ...). The answer (Core §3.1.3.3) carries `Cache-Control: no-store` and an
  RS256 `id_token` (Core §2: iss, sub, aud, exp, iat, auth_time, nonce) with the user's
  claims, set by `PUT /_sim/users/{username}/claims` (e.g. `roles`, `sites`).

`GET /_sim/events` lists the codes issued and redeemed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import RSAKey

from . import signin_page
from .common import FormError, read_form, stamp
from .demo import DEMO_OIDC_PEOPLE

CODE_TTL_S = 60.0
ID_TOKEN_TTL_S = 300
DEFAULT_CLIENT = "sortie-console"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    username: str
    nonce: str | None
    challenge: str
    issued: float
    auth_time: int


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oidc"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _client_auth(request: Request, form: dict[str, str]) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            raw = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = raw.partition(":")
        return (client_id, secret) if sep else None
    if "client_id" in form and "client_secret" in form:
        return form["client_id"], form["client_secret"]
    return None


HEADING = {"fr": "Fournisseur d'identité", "en": "Identity provider"}


def _signin_page(request: Request, error: str | None = None) -> HTMLResponse:
    action = f"/authorize?{request.url.query}"
    return signin_page.page(request, heading=HEADING, action=action, hidden={}, error=error)


class OidcProvider:
    def __init__(
        self, clients: dict[str, tuple[str, list[str]]], claims: dict[str, Any] | None = None
    ) -> None:
        # client_id -> (secret, registered redirect URIs)
        self.clients = clients
        self.key = RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(8)})
        self.grants: dict[str, Grant] = {}
        self.claims: dict[str, dict[str, Any]] = {u: dict(c) for u, c in (claims or {}).items()}
        self.events: list[dict[str, Any]] = []

    def check_authorize(self, q: dict[str, str]) -> tuple[str | None, str | None]:
        """(page error, redirect error): Core §3.1.2.1-§3.1.2.2 and RFC 7636 §4.4.1."""
        client = self.clients.get(q.get("client_id", ""))
        if client is None or q.get("redirect_uri") not in client[1]:
            return "unknown client_id or unregistered redirect_uri", None
        if q.get("response_type") != "code":
            return None, "unsupported_response_type"
        if "openid" not in q.get("scope", "").split():
            return None, "invalid_scope"
        if not q.get("code_challenge") or q.get("code_challenge_method") != "S256":
            return None, "invalid_request"
        return None, None

    def issue_code(self, q: dict[str, str], username: str) -> str:
        code = secrets.token_urlsafe(32)
        self.grants[code] = Grant(
            q["client_id"],
            q["redirect_uri"],
            username,
            q.get("nonce"),
            q["code_challenge"],
            time.monotonic(),
            int(time.time()),
        )
        self.events.append({**stamp(), "what": "code_issued", "username": username})
        return code

    def id_token(self, issuer: str, grant: Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            **self.claims.get(grant.username, {}),
            "iss": issuer,
            "sub": grant.username,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + ID_TOKEN_TTL_S,
            "auth_time": grant.auth_time,
            "preferred_username": grant.username,
        }
        if grant.nonce:
            claims["nonce"] = grant.nonce
        header = {"alg": "RS256", "typ": "JWT", "kid": self.key.kid}
        return jwt.encode(header, claims, self.key)

    def redeem(self, form: dict[str, str], client_id: str) -> tuple[Grant | None, str]:
        """RFC 6749 §4.1.3 and RFC 7636 §4.6: the code, its client, redirect URI, verifier."""
        grant = self.grants.pop(form.get("code", ""), None)
        if grant is None or time.monotonic() - grant.issued > CODE_TTL_S:
            return None, "unknown, used or expired code"
        if grant.client_id != client_id:
            return None, "the code was issued to another client"
        if form.get("redirect_uri") != grant.redirect_uri:
            return None, "redirect_uri differs from the authorization request's"
        if s256(form.get("code_verifier", "")) != grant.challenge:
            return None, "code_verifier does not match the code_challenge"
        self.events.append({**stamp(), "what": "code_redeemed", "username": grant.username})
        return grant, ""


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def discovery_document(base: str) -> dict[str, Any]:
    """Discovery 1.0 §3: the provider's metadata, `issuer` first."""
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "roles", "sites"],
    }


def _back(q: dict[str, str], **params: str) -> Response:
    """To the client's redirect URI with `params` and the request's `state` (§3.1.2.5-6)."""
    if "state" in q:
        params["state"] = q["state"]
    return RedirectResponse(f"{q['redirect_uri']}?{urlencode(params)}", 302)


def _token(
    provider: OidcProvider, auth: tuple[str, str] | None, form: dict[str, str], issuer: str
) -> Response:
    """Core §3.1.3: the client's authentication, the grant, then the tokens."""
    client = provider.clients.get(auth[0]) if auth else None
    if auth is None or client is None or not secrets.compare_digest(auth[1], client[0]):
        return _oauth_error("invalid_client", "client authentication failed", 401)
    if form.get("grant_type") != "authorization_code":
        return _oauth_error("unsupported_grant_type", "authorization_code only")
    grant, why = provider.redeem(form, auth[0])
    if grant is None:
        return _oauth_error("invalid_grant", why)
    body = {
        "access_token": secrets.token_urlsafe(32),
        "token_type": "Bearer",
        "expires_in": ID_TOKEN_TTL_S,
        "id_token": provider.id_token(issuer, grant),
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _install_admin(app: FastAPI, provider: OidcProvider) -> None:
    """`/_sim/`: the users' claims, the registered clients, the codes issued and redeemed."""

    @app.put("/_sim/users/{username}/claims")
    async def set_claims(username: str, claims: dict[str, Any]) -> dict[str, Any]:
        reserved = {"iss", "sub", "aud", "exp", "iat", "nonce", "auth_time"}
        provider.claims[username] = {k: v for k, v in claims.items() if k not in reserved}
        return {"username": username, "claims": provider.claims[username]}

    @app.put("/_sim/clients/{client_id}")
    async def set_client(client_id: str, body: dict[str, Any]) -> dict[str, Any]:
        provider.clients[client_id] = (str(body["secret"]), [str(u) for u in body["redirect_uris"]])
        return {"client_id": client_id, "redirect_uris": provider.clients[client_id][1]}

    @app.get("/_sim/events")
    async def events() -> list[dict[str, Any]]:
        return provider.events


def create_app(
    *,
    clients: dict[str, tuple[str, list[str]]] | None = None,
    issuer: str | None = None,
    seed_demo: bool = False,
) -> FastAPI:
    """`clients`: client_id -> (secret, redirect URIs); `issuer`: fixed (default: the URL
    the provider is reached under); `seed_demo`: the demo console people's claims."""
    provider = OidcProvider(clients or {}, DEMO_OIDC_PEOPLE if seed_demo else {})
    app = FastAPI(title="Sortie OpenID Connect provider simulator", docs_url="/_sim/docs")
    app.state.provider = provider

    def iss(request: Request) -> str:
        return issuer or _base(request)

    @app.get("/.well-known/openid-configuration")
    async def discovery(request: Request) -> dict[str, Any]:
        return discovery_document(iss(request))

    @app.get("/jwks")
    async def jwks() -> dict[str, Any]:
        public = provider.key.as_dict(private=False)
        return {"keys": [{**public, "use": "sig", "alg": "RS256"}]}

    @app.get("/authorize", response_model=None)
    async def authorize(request: Request) -> Response:
        q = dict(request.query_params)
        page_error, redirect_error = provider.check_authorize(q)
        if page_error:
            return HTMLResponse(f"<p>{html.escape(page_error)}</p>", status_code=400)
        if redirect_error:
            return _back(q, error=redirect_error)
        return _signin_page(request)

    @app.post("/authorize", response_model=None)
    async def signin(request: Request) -> Response:
        q = dict(request.query_params)
        page_error, redirect_error = provider.check_authorize(q)
        if page_error or redirect_error:
            return HTMLResponse("<p>invalid authorization request</p>", status_code=400)
        try:
            form = await read_form(request)
        except FormError as exc:
            return _signin_page(request, str(exc))
        if not form.get("username") or not form.get("password"):
            return _signin_page(request, "wrong")
        return _back(q, code=provider.issue_code(q, form["username"]))

    @app.post("/token", response_model=None)
    async def token(request: Request) -> Response:
        try:
            form = await read_form(request)
        except FormError as exc:
            return _oauth_error("invalid_request", str(exc))
        return _token(provider, _client_auth(request, form), form, iss(request))

    _install_admin(app, provider)
    return app
