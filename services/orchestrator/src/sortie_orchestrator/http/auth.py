"""Bearer tokens with scopes. Tokens come from configuration; every configured token is
compared in constant time on every call (see settings.match_token). When an OAuth issuer
is configured (setting `oauth`), a JWT access token of that issuer is accepted too, for
the scope `scim` only (oauth.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from sortie_orchestrator.http.guards import limiter
from sortie_orchestrator.http.oauth import OAuthVerifier
from sortie_orchestrator.http.problems import Problem
from sortie_orchestrator.settings import match_token

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]


def _challenge(error: str | None = None) -> dict[str, str]:
    value = 'Bearer realm="sortie"'
    if error:
        value += f', error="{error}"'
    return {"WWW-Authenticate": value}


def _verifier(request: Request) -> OAuthVerifier | None:
    verifier: OAuthVerifier | None = getattr(request.app.state, "oauth", None)
    settings = request.app.state.settings
    if verifier is None and settings.oauth is not None:
        verifier = request.app.state.oauth = OAuthVerifier(settings.oauth)
    return verifier


async def authenticate(request: Request) -> Principal:
    """The caller's token (or an OAuth access token for SCIM), checked; failures are
    logged and rate-limited per client."""
    failures = limiter(request)
    failures.check(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        failures.failed(request, "no bearer token")
        raise Problem(401, "missing bearer token", slug="unauthenticated", headers=_challenge())
    found = match_token(request.app.state.token_table, token.strip())
    verifier = _verifier(request)
    if found is None and verifier is not None and token.count(".") == 2:
        found = await verifier.verify(token.strip())
    if found is None:
        failures.failed(request, "unknown token")
        raise Problem(
            401,
            "invalid bearer token",
            slug="unauthenticated",
            headers=_challenge("invalid_token"),
        )
    return Principal(name=found[0], scopes=found[1])


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if scope not in principal.scopes:
            log.info("token %s lacks scope %s", principal.name, scope)
            raise Problem(
                403,
                f"this token lacks the scope {scope!r}",
                slug="insufficient-scope",
                headers=_challenge("insufficient_scope"),
            )
        return principal

    return dependency
