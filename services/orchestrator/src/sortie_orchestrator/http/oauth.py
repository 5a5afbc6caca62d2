"""OAuth 2.0 access tokens (JWT, RFC 9068) from one configured issuer, beside the static
bearer tokens: what an IdP's provisioning sends when it runs the client-credentials
grant. The signature is checked against the issuer's JWKS (fetched from configuration
only, cached, refetched at most once a minute for an unknown `kid`); `iss`, `aud`, `exp`
are required. The token grants only the configured scope (default `scim`), when its `scp`
or `scope` (space-separated) or `roles` (Entra ID app roles) carry it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

REFETCH_S = 60.0


class OAuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    audience: str
    jwks_url: AnyHttpUrl
    scope: str = "scim"
    algorithms: list[str] = ["RS256", "ES256"]
    leeway_s: int = Field(default=60, ge=0, le=600)
    cache_s: int = Field(default=3600, ge=60)


class OAuthVerifier:
    def __init__(self, settings: OAuthSettings) -> None:
        self.settings = settings
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()

    async def _refresh(self, force: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched
            if age < (REFETCH_S if force else self.settings.cache_s):
                return
            self._fetched = time.monotonic()
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    resp = await http.get(str(self.settings.jwks_url))
                    resp.raise_for_status()
                keys = jwt.PyJWKSet.from_dict(resp.json()).keys
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                log.warning("could not read the OAuth issuer's JWKS: %s", type(exc).__name__)
                return
            self._keys = {str(k.key_id): k for k in keys if k.key_id}

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        await self._refresh(force=False)
        if kid not in self._keys:
            await self._refresh(force=True)
        return self._keys.get(kid)

    async def verify(self, token: str) -> tuple[str, frozenset[str]] | None:
        """(principal name, scopes) for a valid token, else None (never says why)."""
        cfg = self.settings
        try:
            header = jwt.get_unverified_header(token)
            key = await self._key(str(header.get("kid", "")))
            if key is None or header.get("alg") not in cfg.algorithms:
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=cfg.algorithms,
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            return None
        granted: set[str] = set()
        for claim in ("scp", "scope"):
            value = claims.get(claim)
            granted |= set(value.split()) if isinstance(value, str) else set(value or [])
        roles = claims.get("roles")
        granted |= {str(r) for r in roles} if isinstance(roles, list) else set()
        client = (
            claims.get("azp") or claims.get("appid") or claims.get("client_id") or claims.get("sub")
        )
        scopes = frozenset({"scim"}) if cfg.scope in granted else frozenset()
        return f"oauth:{str(client)[:100]}", scopes
