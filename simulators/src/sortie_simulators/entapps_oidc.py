"""How the simulated `oidc_bcl` applications verify a logout token, as a relying party
does (OpenID Connect Back-Channel Logout 1.0 §2.6): the signature against the issuer's
JWKS (fetched again when a token names an unknown `kid`, as keys rotate), then `typ`,
`iss`, `aud`, `iat` and `exp`. Verification uses joserfc, not the library Sortie signs
with, so the two check each other."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .logout_messages import InvalidLogoutMessage

ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA")
JWKS_SUFFIX = "/.well-known/jwks.json"
# Clock skew tolerated on `iat` and `exp`.
LEEWAY_S = 30


class LogoutTokenVerifier:
    def __init__(self, jwks_url: str, *, issuer: str | None = None) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer or jwks_url.removesuffix(JWKS_SUFFIX)
        self._keys: KeySet | None = None
        # One fetch at a time: tokens arriving together with an unknown `kid` wait for it
        # instead of each fetching the JWKS (as a relying party's key cache does).
        self._fetching = asyncio.Lock()

    async def _fetch(self) -> KeySet:
        try:
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as client:
                response = await client.get(self.jwks_url)
            response.raise_for_status()
            keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise InvalidLogoutMessage(f"cannot load the issuer's JWKS ({exc})") from exc
        self._keys = keys
        return keys

    async def _keys_for(self, kid: Any) -> KeySet:
        keys = self._keys
        if keys is not None and any(k.kid == kid for k in keys.keys):
            return keys
        async with self._fetching:
            keys = self._keys  # fetched meanwhile by the task holding the lock?
            if keys is None or not any(k.kid == kid for k in keys.keys):
                keys = await self._fetch()
        return keys

    async def verify(self, token: str, *, audience: str) -> dict[str, Any]:
        from joserfc.jws import extract_compact

        try:
            header = extract_compact(token.encode()).headers()
        except (JoseError, ValueError) as exc:
            raise InvalidLogoutMessage("logout_token is not a compact JWS") from exc
        if header.get("typ") not in (None, "logout+jwt", "JWT"):
            raise InvalidLogoutMessage(f"unexpected token type {header.get('typ')!r}")
        keys = await self._keys_for(header.get("kid"))
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
        except JoseError as exc:
            raise InvalidLogoutMessage(f"bad logout_token signature ({exc.error})") from exc
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_S,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": audience},
            iat={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(decoded.claims)
        except JoseError as exc:
            raise InvalidLogoutMessage(
                f"logout_token refused: {exc.description or exc.error}"
            ) from exc
        if decoded.claims["iat"] > time.time() + LEEWAY_S:
            raise InvalidLogoutMessage("logout_token refused: issued in the future")
        return dict(decoded.claims)
