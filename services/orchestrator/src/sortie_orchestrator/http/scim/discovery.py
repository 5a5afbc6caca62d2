"""SCIM discovery (RFC 7644 section 4): the service provider's configuration, its
resource types and schemas."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from scim2_models import Context, NotFoundException, Schema

from sortie_orchestrator.http.scim.model import CONFIG, PROVIDER
from sortie_orchestrator.http.scim.protocol import Scim, base_url, ok, scim_router

router = scim_router()


def _described(items: list[Any], base: str, endpoint: str) -> list[dict[str, Any]]:
    out = []
    for item in items:
        body = item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
        resource_type = "Schema" if endpoint == "Schemas" else "ResourceType"
        body["meta"] = {"resourceType": resource_type, "location": f"{base}/{endpoint}/{item.id}"}
        out.append(body)
    return out


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": len(items),
        "startIndex": 1,
        "itemsPerPage": len(items),
        "Resources": items,
    }


@router.get("/ServiceProviderConfig")
async def get_spc(request: Request, _p: Scim) -> Response:
    body = CONFIG.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    body["meta"] = {
        "resourceType": "ServiceProviderConfig",
        "location": f"{base_url(request)}/ServiceProviderConfig",
    }
    return ok(body)


@router.get("/ResourceTypes")
async def list_resource_types(request: Request, _p: Scim) -> Response:
    return ok(
        _listing(_described(list(PROVIDER.resource_types), base_url(request), "ResourceTypes"))
    )


@router.get("/ResourceTypes/{rtid}")
async def get_resource_type(rtid: str, request: Request, _p: Scim) -> Response:
    found = [r for r in PROVIDER.resource_types if r.id == rtid]
    if not found:
        raise NotFoundException(detail=f"no resource type {rtid[:100]!r}")
    return ok(_described(found, base_url(request), "ResourceTypes")[0])


@router.get("/Schemas")
async def list_schemas(request: Request, _p: Scim) -> Response:
    return ok(_listing(_described(list(PROVIDER.schemas), base_url(request), "Schemas")))


@router.get("/Schemas/{sid}")
async def get_schema(sid: str, request: Request, _p: Scim) -> Response:
    found: list[Schema] = [s for s in PROVIDER.schemas if s.id == sid]
    if not found:
        raise NotFoundException(detail=f"no schema {sid[:200]!r}")
    return ok(_described(found, base_url(request), "Schemas")[0])
