"""`GET /.well-known/jwks.json`: the public keys that verify Sortie's OpenID Connect
back-channel logout tokens (RFC 7517 JWK Set), as the ENT worker published them
(adapters/logout_keys.py). Public and unauthenticated, as relying parties fetch it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sortie_orchestrator import handlers

router = APIRouter()


@router.get("/.well-known/jwks.json", tags=["oidc"], summary="Sortie's logout token keys")
async def jwks(request: Request) -> JSONResponse:
    deps: handlers.Deps = request.app.state.deps
    keys = await deps.logout_keys.published()
    return JSONResponse(
        {"keys": keys},
        media_type="application/jwk-set+json",
        # Relying parties refetch when they meet an unknown `kid`; a short cache is enough.
        headers={"Cache-Control": "public, max-age=60"},
    )
