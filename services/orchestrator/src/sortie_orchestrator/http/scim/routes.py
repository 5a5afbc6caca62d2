"""SCIM 2.0 (RFC 7643/7644) under `/scim/v2` for HR and IAM systems, on scim2-models:
discovery (discovery.py), Users and Groups with filters, PATCH and ETags (resources.py).
What a user's lifecycle starts (offboardings) is in lifecycle.py; the answer does not wait
for it (header `Sortie-Offboarding` points to the request). Any other path under the prefix
gets a SCIM error, not the API's problem+json."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from sortie_orchestrator.http.scim import discovery, resources
from sortie_orchestrator.http.scim.protocol import Scim, ScimRoute, scim_error

router = APIRouter(prefix="/scim/v2", route_class=ScimRoute, tags=["SCIM 2.0"])
router.include_router(discovery.router)
router.include_router(resources.router)


_READ_ONLY_PATHS = ("/ServiceProviderConfig", "/ResourceTypes", "/Schemas")
_COLLECTIONS = ("/Users", "/Groups")


@router.api_route(
    "/{rest:path}",
    methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
async def not_here(rest: str, request: Request, _p: Scim) -> Response:
    path = "/" + rest
    if request.method != "GET" and path.startswith(_READ_ONLY_PATHS):
        return scim_error(405, f"{request.method} is not allowed on {path[:100]}")
    if path.rstrip("/") in _COLLECTIONS or (
        path.startswith(tuple(c + "/" for c in _COLLECTIONS)) and request.method == "POST"
    ):
        return scim_error(405, f"{request.method} is not allowed on {path[:100]}")
    return scim_error(404, f"no SCIM endpoint {path[:100]}")
